"""slurm-ckptd's API over a real socket with the real munged, and the real ckpt-admin
run as the ordinary test users: the service decides who may see and do what, from
the uid MUNGE proves and its own admin group; nothing a user sets grants a right.

The API server runs in the test process (as the service would, as root) on its own
SQLite catalog; the service's admin group is ckpt-bob's own group, so bob is the
admin and alice an ordinary user. No Slurm is needed: actions are only recorded.
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import json
import os
import pwd
import shutil
import socket
import stat
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from slurm_ckpt import munge, proc
from slurm_ckpt.cli.remote import RemoteBackend
from slurm_ckpt.config import Settings, load_settings
from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog, DumpResult, NewJob
from slurm_ckpt.db.models import Action
from slurm_ckpt.db.session import open_database
from slurm_ckpt.db.states import JobState
from slurm_ckpt.service import api as api_module
from slurm_ckpt.service.api import Api, ApiServer
from slurm_ckpt.service.ops import JobQuery
from slurm_ckpt.store.checksum import hash_file
from slurm_ckpt.store.folders import ensure_job_dir
from slurm_ckpt.store.manifest import MANIFEST_NAME
from slurm_ckpt.store.writer import begin_checkpoint, commit_checkpoint
from tests.conftest import SLURM_PATH

from .launcher_helpers import make_store, remove_store
from .slurm_helpers import REPO, SlurmTestClient

ADMIN = REPO / ".venv" / "bin" / "ckpt-admin"
CLUSTER = "test"
ALICE, BOB = "ckpt-alice", "ckpt-bob"
ALICE_JOB, ALICE_IDLE_JOB, BOB_JOB = 5001, 5003, 5002
SHARED = Path("/tmp/slurm-ckpt-tests")


@dataclass
class World:
    catalog: Catalog
    settings: Settings
    url: str
    port: int
    client_config: Path  # readable by the test users; names only the API's URL
    shared: Path  # a folder the test users can read


def users() -> tuple[pwd.struct_passwd, pwd.struct_passwd]:
    try:
        return pwd.getpwnam(ALICE), pwd.getpwnam(BOB)
    except KeyError:
        pytest.fail("the test users are missing: run scripts/setup-system.sh users")


@contextlib.contextmanager
def acting_as(user: pwd.struct_passwd) -> Iterator[None]:
    """This process's effective ids are `user`'s (as the launcher runs), then root's again.
    Only before the API server starts: no other thread must run meanwhile."""
    os.setegid(user.pw_gid)
    os.seteuid(user.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def image(catalog: Catalog, store: Path, job_id: int, user: pwd.struct_passwd) -> None:
    """One committed image of the job in the user's folder of `store`, written as the
    user (as the launcher writes it), recorded as VALID."""
    c = catalog.request_checkpoint(catalog_id(catalog, job_id), now())
    with acting_as(user):
        job_dir = ensure_job_dir(store, user.pw_name, job_id)
        staging = begin_checkpoint(job_dir, c.seq)
        (staging / "pages-1.img").write_bytes(b"x" * 100_000)
        path, manifest = commit_checkpoint(
            job_dir,
            staging,
            seq=c.seq,
            uid=user.pw_uid,
            gid=user.pw_gid,
            criu_version="4.2.1",
            kernel="6.1",
            dump_seconds=0.2,
            freeze_seconds=0.1,
        )
    checksum = f"xxh3_128:{hash_file(path / MANIFEST_NAME)}"
    result = DumpResult(
        str(path), manifest.total_size, len(manifest.files), 0.2, 0.1, "4.2.1", checksum
    )
    catalog.mark_valid(c.id, result, now())


def now() -> datetime:
    return datetime.now(UTC)


def catalog_id(catalog: Catalog, job_id: int) -> int:
    record = catalog.find_job(CLUSTER, job_id)
    assert record is not None
    return record.id


@pytest.fixture(scope="module")
def world(cluster: SlurmTestClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # The cluster fixture is what starts munged; the service under test is this one's own.
    alice, bob = users()
    if proc.run(
        ["runuser", "-u", ALICE, "--", "test", "-x", str(ADMIN)], timeout=30, check=False
    ).returncode:
        pytest.fail(f"{ADMIN} is not executable by {ALICE}")
    private = tmp_path_factory.mktemp("admin-api")
    # The store where the users can reach their own folders (the service verifies as
    # the owner), laid out like a site's: a root 0711 root, a 0700 folder per user.
    store = make_store(alice, bob)
    url = f"sqlite:///{private}/catalog.db"
    config = private / "service.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{private}"\nstore_root = "{store}"\n'
        f'[catalog]\nurl = "{url}"\n[slurm]\ncluster = "{CLUSTER}"\n'
        f'[admin]\ngroup = "{BOB}"\n[retention]\nkeep_last = 1\n'
    )
    settings = load_settings(config, env={})
    migrate.upgrade(url, group=settings.admin.group)
    db = open_database(url)
    catalog = Catalog(db)
    for job_id, user in ((ALICE_JOB, alice), (ALICE_IDLE_JOB, alice), (BOB_JOB, bob)):
        (record,) = catalog.track_jobs(
            [NewJob(CLUSTER, job_id, user.pw_name, user.pw_uid, 60, state=JobState.RUNNING)], now()
        )
        catalog.update_job(record.id, now(), batch_host="node1" if user is alice else "node2")
    image(catalog, store, ALICE_JOB, alice)
    image(catalog, store, BOB_JOB, bob)

    server = ApiServer(Api(catalog, settings), host="127.0.0.1", port=0)
    server.start()
    SHARED.mkdir(mode=0o755, exist_ok=True)
    shared = SHARED / f"api-{uuid.uuid4().hex[:8]}"
    shared.mkdir(mode=0o755)
    client_config = shared / "client.toml"
    api_url = f"http://127.0.0.1:{server.port}"
    client_config.write_text(f'[slurm]\ncluster = "{CLUSTER}"\n[api]\nurl = "{api_url}"\n')
    client_config.chmod(0o644)
    try:
        yield World(catalog, settings, api_url, server.port, client_config, shared)
    finally:
        server.stop()
        db.dispose()
        shutil.rmtree(shared, ignore_errors=True)
        remove_store(store)


def admin(
    world: World,
    *args: str,
    user: str,
    env: dict[str, str] | None = None,
    config: Path | None = None,
) -> proc.Completed:
    argv = ["runuser", "-u", user, "--", str(ADMIN), "--config", str(config or world.client_config)]
    base = {
        "PATH": f"{SLURM_PATH}:/usr/sbin:/usr/bin:/sbin:/bin",
        "COLUMNS": "100",
        "LANG": "C.UTF-8",
    }
    return proc.run([*argv, *args], timeout=120, check=False, env={**base, **(env or {})}, cwd="/")


def doc(result: proc.Completed, kind: str) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    assert body["kind"] == kind
    return body


def job_ids(result: proc.Completed) -> set[int]:
    return {job["job_id"] for job in doc(result, "job_list")["jobs"]}


def refused(result: proc.Completed, code: int, fragment: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckpt-admin: "), result.stderr
    assert fragment in lines[0], lines[0]


def recorded(world: World) -> int:
    with world.catalog.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Action)) or 0)


def credential(user: str, payload: bytes, *options: str) -> bytes:
    made = proc.run(["runuser", "-u", user, "--", "munge", *options], timeout=30, input=payload)
    return made.stdout.strip().encode()


def post(port: int, body: bytes, *, method: str = "POST", path: str = "/v1") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data  # one line of JSON
    return response.status, json.loads(data)


REQUEST = (
    b'{"op":"list-jobs","args":{"cluster":"test","user":null,"states":[],"node":null,"all":true}}'
)


# Who sees what


def test_a_user_sees_only_their_own_jobs(world: World) -> None:
    assert job_ids(admin(world, "list-jobs", "--json", "--all", user=ALICE)) == {
        ALICE_JOB,
        ALICE_IDLE_JOB,
    }
    table = admin(world, "list-jobs", user=ALICE)
    assert table.returncode == 0 and str(BOB_JOB) not in table.stdout, table.stdout
    refused(admin(world, "list-jobs", "--user", BOB, user=ALICE), 8, "other users' jobs")
    refused(admin(world, "show", str(BOB_JOB), user=ALICE), 8, "belongs to another user")
    refused(admin(world, "checkpoints", str(BOB_JOB), user=ALICE), 8, "belongs to another user")
    refused(admin(world, "show", "999", user=ALICE), 3, "job 999 is not tracked")


def test_a_users_own_settings_never_make_them_an_admin(world: World) -> None:
    own_group = grp.getgrgid(pwd.getpwnam(ALICE).pw_gid).gr_name
    forged = world.shared / "alice-admin.toml"
    forged.write_text(world.client_config.read_text() + f'[admin]\ngroup = "{own_group}"\n')
    forged.chmod(0o644)
    before = recorded(world)
    for how in ({"env": {"SLURM_CKPT_ADMIN_GROUP": own_group}}, {"config": forged}):
        listed = admin(world, "list-jobs", "--json", "--all", user=ALICE, **how)  # type: ignore[arg-type]
        assert job_ids(listed) == {ALICE_JOB, ALICE_IDLE_JOB}
        shown = admin(world, "show", str(BOB_JOB), user=ALICE, **how)  # type: ignore[arg-type]
        refused(shown, 8, "belongs to another user")
        requeue = admin(world, "requeue", str(ALICE_JOB), user=ALICE, **how)  # type: ignore[arg-type]
        refused(requeue, 8, f"needs root or membership in the group {BOB}")
    assert recorded(world) == before


@pytest.mark.parametrize(
    "args",
    [
        ["requeue", str(ALICE_JOB), "--checkpoint-first"],
        ["requeue", str(BOB_JOB)],
        ["drain", "node2"],
        ["gc", "--yes"],
        ["checkpoint", str(BOB_JOB)],
        ["verify", str(BOB_JOB)],
    ],
)
def test_a_user_cannot_act_on_others_jobs_or_run_admin_commands(
    world: World, args: list[str]
) -> None:
    before = recorded(world)
    refused(admin(world, *args, user=ALICE), 8, "")
    assert recorded(world) == before


def test_an_action_is_recorded_with_the_verified_users_name(world: World) -> None:
    done = doc(admin(world, "checkpoint", str(ALICE_JOB), "--json", user=ALICE), "action")
    action = done["action"]
    assert action["requested_by"] == ALICE and action["state"] == "PENDING"
    assert world.catalog.get_action(action["id"]).requested_by == ALICE
    again = doc(admin(world, "action", str(action["id"]), "--json", user=ALICE), "action")
    assert again["action"]["id"] == action["id"]
    # Bob, the admin, follows any action; alice not his.
    theirs = doc(admin(world, "checkpoint", str(BOB_JOB), "--json", user=BOB), "action")
    assert theirs["action"]["requested_by"] == BOB
    refused(admin(world, "action", str(theirs["action"]["id"]), user=ALICE), 8, "another user")
    doc(admin(world, "action", str(action["id"]), "--json", user=BOB), "action")


def test_a_member_of_the_services_admin_group_may_do_everything(world: World) -> None:
    assert job_ids(admin(world, "list-jobs", "--json", "--all", user=BOB)) >= {
        ALICE_JOB,
        BOB_JOB,
    }
    before = recorded(world)
    for args, kind in [
        (["requeue", str(ALICE_JOB), "--checkpoint-first", "--json"], "requeue"),
        (["drain", "node1", "--reason", "disk\tswap\x1b[31m", "--json"], "drain"),
        (["gc", "--yes", "--json"], "gc"),
    ]:
        action = doc(admin(world, *args, user=BOB), "action")["action"]
        assert action["kind"] == kind and action["requested_by"] == BOB
    drain = world.catalog.get_action(before + 2)
    assert drain.options == {"reason": "disk swap [31m"}  # no control characters kept
    assert recorded(world) == before + 3
    plan = doc(admin(world, "gc", "--json", user=BOB), "gc_plan")
    assert plan["dry_run"] is True and plan["policy"]["keep_last"] == 1


def test_verify_runs_in_the_service_for_the_jobs_owner(world: World) -> None:
    result = doc(
        admin(world, "verify", str(ALICE_JOB), "--read-data", "--json", user=ALICE), "verify"
    )
    assert result["ok"] is True and result["checkpoints"][0]["total_bytes"] == 100_000
    refused(admin(world, "verify", str(ALICE_IDLE_JOB), user=ALICE), 4, "no valid checkpoint")
    refused(admin(world, "verify", str(BOB_JOB), user=ALICE), 8, "belongs to another user")


def test_output_through_the_api_is_the_same_as_roots_on_the_catalog(world: World) -> None:
    env = {"SLURM_CKPT_NOW": "2030-01-01T00:00:00Z"}
    root_config = world.settings.config_file
    assert root_config is not None
    for args in (["list-jobs", "--json", "--all"], ["show", str(ALICE_JOB)], ["gc"]):
        mine = admin(world, *args, user=BOB, env=env)
        roots = admin(world, *args, user="root", env=env, config=root_config)
        assert mine.returncode == roots.returncode == 0, (mine.stderr, roots.stderr)
        assert mine.stdout == roots.stdout


# The credential and the request


def test_forged_garbage_expired_and_replayed_credentials_are_refused(world: World) -> None:
    good = credential(ALICE, REQUEST)
    status, body = post(world.port, good)
    assert status == 200 and {j["summary"]["job"]["uid"] for j in body["result"]} == {
        pwd.getpwnam(ALICE).pw_uid
    }
    status, body = post(world.port, good)
    assert (status, body["error"]["kind"]) == (401, "unauthenticated")
    assert "replayed" in body["error"]["message"]

    fresh = credential(ALICE, REQUEST)
    middle = len(fresh) // 2
    forged = (
        fresh[:middle]
        + (b"A" if fresh[middle : middle + 1] != b"A" else b"B")
        + fresh[middle + 1 :]
    )
    expired = credential(ALICE, REQUEST, "--ttl=1")
    not_for_us = credential(ALICE, REQUEST, f"--restrict-uid={pwd.getpwnam(BOB).pw_uid}")
    time.sleep(2.5)
    for body_sent, why in [
        (b"garbage", "not a MUNGE credential"),
        (b"MUNGE:AAAA:", "MUNGE credential refused"),
        (forged, "MUNGE credential refused"),
        (expired, "expired"),
        (not_for_us, "not meant for this service"),
        (REQUEST, "not a MUNGE credential"),  # a payload without a credential
    ]:
        status, body = post(world.port, body_sent)
        assert (status, body["error"]["kind"]) == (401, "unauthenticated"), (why, body)
        assert why in body["error"]["message"], body
    status, _ = post(world.port, credential(ALICE, REQUEST))
    assert status == 200  # still serving


def test_malformed_requests_are_refused_and_nothing_is_recorded(world: World) -> None:
    before = recorded(world)
    checkpoint = {"op": "checkpoint", "args": {"cluster": CLUSTER, "job_id": ALICE_JOB}}
    for payload, status, kind in [
        (b"not json", 400, "bad_request"),
        (b"[" * 30_000, 400, "bad_request"),
        (
            json.dumps({**checkpoint, "args": {**checkpoint["args"], "requested_by": "root"}}),
            400,
            "bad_request",
        ),
        (json.dumps({"op": "sql", "args": {}}), 400, "bad_request"),
    ]:
        data = payload if isinstance(payload, bytes) else payload.encode()
        got, body = post(world.port, credential(ALICE, data))
        assert (got, body["error"]["kind"]) == (status, kind), body
    assert post(world.port, b"x" * (api_module.MAX_BODY + 1))[0] == 413
    assert post(world.port, b"", method="GET")[0] == 405
    assert post(world.port, REQUEST, path="/v2")[0] == 404
    assert recorded(world) == before


def test_a_slow_client_is_cut_at_the_deadline_and_a_flood_gets_503(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_module, "READ_DEADLINE", 1.0)
    monkeypatch.setattr(api_module, "MAX_IN_FLIGHT", 1)
    with ApiServer(Api(world.catalog, world.settings), port=0) as server:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            slow.sendall(b"POST /v1 HTTP/1.0\r\nContent-Length: 100\r\n\r\nMUNGE:")
            time.sleep(0.2)
            status, body = post(server.port, credential(ALICE, REQUEST))
            assert (status, body["error"]["kind"]) == (503, "busy")
            started = time.monotonic()
            assert slow.recv(100) == b""  # cut, without an answer
            assert time.monotonic() - started < 5
        finally:
            slow.close()
        time.sleep(0.2)
        assert post(server.port, credential(ALICE, REQUEST))[0] == 200


def test_an_unreachable_service_is_one_line_naming_what_to_check(world: World) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result = admin(
        world, "list-jobs", user=ALICE, env={"SLURM_CKPT_API_URL": f"http://127.0.0.1:{closed}"}
    )
    refused(result, 5, "connection refused")
    assert "slurm-ckptd" in result.stderr and "[api] url" in result.stderr


# The catalog file


def test_the_catalog_is_readable_by_root_and_the_admin_group_only(
    world: World, tmp_path: Path
) -> None:
    path = Path(world.settings.catalog.url.removeprefix("sqlite:///"))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        st = os.stat(name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            0,
            grp.getgrnam(BOB).gr_gid,
            0o640,
        ), name
    lonely = f"sqlite:///{tmp_path}/other.db"
    migrate.upgrade(lonely, group="no-such-group-here")
    assert stat.S_IMODE(os.stat(tmp_path / "other.db").st_mode) == 0o600


def test_one_list_jobs_through_the_api_takes_milliseconds(world: World) -> None:
    client = RemoteBackend(world.url, sign=munge.encode)
    took = []
    for _ in range(20):
        started = time.perf_counter()
        client.list_jobs(cluster=CLUSTER, query=JobQuery(include_ended=True))
        took.append(time.perf_counter() - started)
    assert statistics.median(took) < 0.5, took
