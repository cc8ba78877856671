"""ckpt-admin on the real cluster, run as root and as the test users through the
installed copy: list-jobs and who sees what (root reads the catalog, users ask
slurm-ckptd's API, which decides), checkpoint --wait, requeue --checkpoint-first
(the job resumes from the new image), drain (every job on the node resumes
elsewhere, the node is drained), doctor."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from slurm_ckpt import proc
from slurm_ckpt.config import load_settings
from slurm_ckpt.db.catalog import Catalog, JobRecord
from slurm_ckpt.db.session import open_database

from .launcher_helpers import count_lines, wait_until
from .service_helpers import restored
from .slurm_helpers import SlurmTestClient

CONFIG = Path("/etc/slurm-ckpt/config.toml")
ADMIN = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt")) / "venv/bin/ckpt-admin"
CLUSTER = "ckptdev"
NODES = ("node1", "node2")


@pytest.fixture(scope="module")
def catalog(cluster: SlurmTestClient) -> Iterator[Catalog]:
    db = open_database(load_settings(CONFIG).catalog.url)
    yield Catalog(db)
    db.dispose()


def admin(
    *args: str, user: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> proc.Completed:
    argv: list[str] = [str(ADMIN), *args]
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    full_env = {**os.environ, "COLUMNS": "100", **(env or {})}
    return proc.run(argv, timeout=timeout, check=False, env=full_env, cwd="/")


def listed(result: proc.Completed) -> dict[int, dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["kind"] == "job_list"
    return {job["job_id"]: job for job in doc["jobs"]}


def counter_script(lines: int, pause: float = 0.5) -> str:
    return (
        "#!/bin/bash\n"
        "#SBATCH --checkpoint=10s\n"
        "exec 3>>counter.txt\n"
        f"for i in $(seq 1 {lines}); do\n"
        '    echo "line $i" >&3\n'
        f"    sleep {pause}\n"
        "done\n"
    )


def expected(lines: int) -> str:
    return "".join(f"line {i}\n" for i in range(1, lines + 1))


def running_and_tracked(
    cluster: SlurmTestClient, catalog: Catalog, job: int
) -> tuple[dict[str, str], JobRecord]:
    record = cluster.wait_for(job, {"RUNNING"}, timeout=60)
    tracked = wait_until(
        lambda: (r := catalog.find_job(CLUSTER, job)) is not None and r.state == "RUNNING" and r,
        30,
        f"job {job} tracked as RUNNING",
    )
    return record, tracked


def submit(cluster: SlurmTestClient, user: pwd.struct_passwd, folder: Path, lines: int) -> int:
    return cluster.submit(
        counter_script(lines), user=user.pw_name, cwd=folder, args=["--output=job.out"]
    )


def test_list_jobs_shows_a_running_job_to_root_and_its_owner_only(
    cluster: SlurmTestClient, catalog: Catalog, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    job = submit(cluster, test_user, user_dir, 120)
    try:
        record, _ = running_and_tracked(cluster, catalog, job)
        as_root = listed(admin("list-jobs", "--json"))
        row = as_root[job]
        assert row["user"] == "ckpt-alice" and row["state"] == "RUNNING"
        assert row["node"] == record["BatchHost"] and row["interval_seconds"] == 10
        table = admin("list-jobs")
        assert table.returncode == 0
        line = next(x for x in table.stdout.splitlines() if x.lstrip().startswith(f"{job} "))
        assert "ckpt-alice" in line and "RUNNING" in line and "10s" in line
        assert max(len(x) for x in table.stdout.splitlines()) <= 100
        assert job in listed(admin("list-jobs", "--json", user="ckpt-alice"))
        as_bob = admin("list-jobs", "--json", "--all", user="ckpt-bob")
        assert job not in listed(as_bob)
        shown = admin("show", str(job), user="ckpt-bob")
        assert shown.returncode == 8 and "belongs to another user" in shown.stderr
        # The admin group is the service's setting: bob naming his own changes nothing.
        own = {"SLURM_CKPT_ADMIN_GROUP": "ckpt-bob"}
        assert job not in listed(admin("list-jobs", "--json", "--all", user="ckpt-bob", env=own))
        requeue = admin("requeue", str(job), "--checkpoint-first", user="ckpt-bob", env=own)
        assert requeue.returncode == 8 and "needs root or membership" in requeue.stderr
    finally:
        cluster.cancel(job)


def test_users_cannot_read_the_catalog_file(cluster: SlurmTestClient) -> None:
    url = load_settings(CONFIG).catalog.url
    path = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///"):
        pytest.skip(f"the catalog is not a SQLite file: {url}")
    for name in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(name):
            readable = proc.run(
                ["runuser", "-u", "ckpt-alice", "--", "test", "-r", name], timeout=30, check=False
            )
            assert readable.returncode != 0, f"{name} is readable by ckpt-alice"


def test_checkpoint_wait_takes_a_new_valid_checkpoint(
    cluster: SlurmTestClient, catalog: Catalog, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    job = submit(cluster, test_user, user_dir, 240)
    try:
        _, tracked = running_and_tracked(cluster, catalog, job)
        before = {c.seq for c in catalog.valid_checkpoints(tracked.id)}
        done = admin("checkpoint", str(job), "--wait", "--timeout", "2m", "--json", timeout=180)
        assert done.returncode == 0, done.stderr
        action = json.loads(done.stdout)["action"]
        assert action["state"] == "DONE" and action["kind"] == "checkpoint"
        after = {c.seq for c in catalog.valid_checkpoints(tracked.id)}
        assert after - before, (before, after, action)
    finally:
        cluster.cancel(job)


def test_requeue_checkpoint_first_resumes_from_the_new_image(
    cluster: SlurmTestClient, catalog: Catalog, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    lines = 90
    job = submit(cluster, test_user, user_dir, lines)
    try:
        _, tracked = running_and_tracked(cluster, catalog, job)
        wait_until(lambda: count_lines(user_dir / "counter.txt") >= 20, 60, "progress")
        done = admin(
            "requeue", str(job), "--checkpoint-first", "--wait", "--timeout", "3m", timeout=240
        )
        assert done.returncode == 0, done.stderr
        newest = catalog.newest_valid(tracked.id)
        assert newest is not None
        final = cluster.wait_for(job, {"COMPLETED", "FAILED"}, timeout=240)
    finally:
        cluster.cancel(job)
    assert final["JobState"] == "COMPLETED" and final["Restarts"] == "1", final
    assert (user_dir / "counter.txt").read_text() == expected(lines)
    restore = restored(catalog, tracked.id)
    # Resumed from the image the requeue took, not from an older periodic one.
    assert restore.checkpoint_seq is not None and restore.checkpoint_seq >= newest.seq


def _usable(cluster: SlurmTestClient, node: str) -> bool:
    return cluster.node_state(node) in ("idle", "mix", "alloc")


def test_drain_moves_every_job_off_the_node_and_drains_it(
    cluster: SlurmTestClient, catalog: Catalog, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    wait_until(lambda: all(_usable(cluster, n) for n in NODES), 90, "both nodes in service")
    lines = 90
    folders = [user_dir / f"job{i}" for i in range(3)]
    for folder in folders:
        folder.mkdir()
        os.chown(folder, test_user.pw_uid, test_user.pw_gid)
    jobs = [submit(cluster, test_user, folder, lines) for folder in folders]
    node = ""
    try:
        first, _ = running_and_tracked(cluster, catalog, jobs[0])
        node = first["BatchHost"]
        for job in jobs[1:]:
            running_and_tracked(cluster, catalog, job)
        on_node = [j for j in jobs if cluster.job(j)["BatchHost"] == node]
        done = admin(
            "drain", node, "--reason", "cli test", "--wait", "--timeout", "4m", timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert cluster.node_state(node).startswith("drain"), cluster.node_state(node)
        finals = {j: cluster.wait_for(j, {"COMPLETED", "FAILED"}, timeout=300) for j in jobs}
    finally:
        for job in jobs:
            cluster.cancel(job)
        if node:
            proc.run(
                ["scontrol", "update", f"nodename={node}", "state=resume"], timeout=30, check=False
            )
    for job, folder in zip(jobs, folders, strict=True):
        assert finals[job]["JobState"] == "COMPLETED", finals[job]
        assert (folder / "counter.txt").read_text() == expected(lines)
    for job in on_node:
        assert finals[job]["BatchHost"] != node and finals[job]["Restarts"] == "1", finals[job]


def doctor(env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    result = admin("doctor", "--json", env=env, timeout=120)
    doc = json.loads(result.stdout)
    assert doc["kind"] == "doctor"
    return result.returncode, {c["name"]: c for c in doc["checks"]}


def test_doctor_passes_on_this_machine(cluster: SlurmTestClient) -> None:
    code, checks = doctor()
    failed: Sequence[str] = [f"{n}: {c['detail']}" for n, c in checks.items() if not c["ok"]]
    assert code == 0 and not failed, failed
    assert set(checks) >= {
        "criu-version",
        "criu-group",
        "criu-capability",
        "store-root",
        "catalog",
        "service",
    }


def test_doctor_fails_a_missing_store_root_with_its_fix(cluster: SlurmTestClient) -> None:
    code, checks = doctor({"SLURM_CKPT_PATHS_STORE_ROOT": "/nonexistent/slurm-ckpt-store"})
    assert code == 9
    store = checks["store-root"]
    assert not store["ok"] and "does not exist" in store["detail"]
    assert store["fix"].startswith("install -d -o root -m 0711 /nonexistent/slurm-ckpt-store")
    assert checks["catalog"]["ok"]  # one broken part does not hide the others


def test_doctor_fails_a_criu_copy_without_the_capability(
    cluster: SlurmTestClient, tmp_path: Path
) -> None:
    plain = tmp_path / "criu-copy"
    plain.write_bytes(Path("/opt/slurm-ckpt/bin/criu-unpriv").read_bytes())
    plain.chmod(0o755)
    code, checks = doctor({"SLURM_CKPT_CRIU_BINARY": str(plain)})
    assert code == 9
    assert not checks["criu-capability"]["ok"]
    assert "setcap cap_checkpoint_restore=ep" in checks["criu-capability"]["fix"]
    human = admin("doctor", env={"SLURM_CKPT_CRIU_BINARY": str(plain)}, timeout=120)
    assert human.returncode == 9
    assert "fix criu-capability: chown root:slurm-ckpt-criu " in human.stdout
    assert human.stderr.startswith("ckpt-admin: ") and len(human.stderr.splitlines()) == 1
