"""The launcher on real processes of an ordinary user, with real unprivileged CRIU,
outside Slurm: checkpoint, kill, restart, fall back, refuse."""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import write_published_images

from .launcher_helpers import LauncherRun, count_lines, make_store, remove_store, wait_until

WORKLOADS = Path(__file__).parent / "workloads"
COUNT = 60
DELAY = 0.05


@pytest.fixture
def store_root(test_user: pwd.struct_passwd) -> Iterator[Path]:
    # Like a site's store: root's 0711 root, a 0700 folder per user (ckpt-bob's too).
    root = make_store(test_user, pwd.getpwnam("ckpt-bob"))
    yield root
    remove_store(root)


@pytest.fixture
def job_id() -> int:
    return random.randint(900_000, 999_999)


def publish(store_root: Path, job_id: int, seqs: list[int], owner: pwd.struct_passwd) -> None:
    """Publish the list of valid images, as the service will."""
    jobdir = JobDir(store_root, owner.pw_name, job_id)
    write_published_images(jobdir, seqs)
    os.chown(jobdir.images_list, owner.pw_uid, owner.pw_gid)


def pipeline(user_dir: Path, exit_code: int = 0) -> list[str]:
    script = user_dir / "pipeline.py"
    shutil.copy(WORKLOADS / "pipeline.py", script)
    os.chmod(script, 0o644)
    return [
        "/usr/bin/python3",
        str(script),
        str(COUNT),
        str(DELAY),
        str(user_dir / "out.txt"),
        str(exit_code),
    ]


def numbers(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def test_checkpoint_kill_restore_continues_and_passes_the_exit_code(
    test_user: pwd.struct_passwd, user_dir: Path, store_root: Path, job_id: int
) -> None:
    command = pipeline(user_dir, exit_code=7)
    first = LauncherRun(test_user, user_dir, store_root, job_id, command)
    wait_until(lambda: count_lines(user_dir / "out.txt") >= 10, 30, "the workload to start")
    result = first.request_checkpoint(1)
    assert result["ok"], f"{result}\n{first.log()}"
    assert result["seq"] == 1 and (first.jobdir / "checkpoints" / "000001").is_dir()
    assert result["freeze_seconds"] <= result["dump_seconds"]
    assert not (first.jobdir / "logs" / "dump-000001.log").exists()  # kept only on failure
    # Work goes on after the checkpoint; then the "node" dies.
    at_checkpoint = count_lines(user_dir / "out.txt")
    wait_until(lambda: count_lines(user_dir / "out.txt") >= at_checkpoint + 5, 30, "more output")
    first.kill()
    publish(store_root, job_id, [1], test_user)

    second = LauncherRun(test_user, user_dir, store_root, job_id, command, restart_count=1)
    code = second.wait()

    assert code == 7, second.log()
    # No gap, no repeat: lines written after the checkpoint were rolled back.
    assert numbers(user_dir / "out.txt") == list(range(1, COUNT + 1))
    assert numbers(user_dir / "stdout.txt") == list(range(1, COUNT + 1))
    report = second.restart_report(1)
    assert report["outcome"] == "restored" and report["seq"] == 1
    manifest = json.loads((first.jobdir / "checkpoints/000001/manifest.json").read_text())
    assert manifest["uid"] == test_user.pw_uid
    recorded = {f["path"] for f in manifest["open_files"]}
    assert {str(user_dir / "out.txt"), str(user_dir / "stdout.txt")} <= recorded


def test_corrupt_newest_image_falls_back_to_the_older_one(
    test_user: pwd.struct_passwd, user_dir: Path, store_root: Path, job_id: int
) -> None:
    command = pipeline(user_dir)
    first = LauncherRun(test_user, user_dir, store_root, job_id, command)
    wait_until(lambda: count_lines(user_dir / "out.txt") >= 10, 30, "the workload to start")
    assert first.request_checkpoint(1)["ok"], first.log()
    wait_until(lambda: count_lines(user_dir / "out.txt") >= 20, 30, "more output")
    assert first.request_checkpoint(2)["ok"], first.log()
    first.kill()
    newest = first.jobdir / "checkpoints/000002"
    pages = max(newest.glob("pages-*.img"), key=lambda p: p.stat().st_size)
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0x01
    pages.write_bytes(bytes(data))
    publish(store_root, job_id, [2, 1], test_user)

    second = LauncherRun(test_user, user_dir, store_root, job_id, command, restart_count=1)
    assert second.wait() == 0, second.log()

    report = second.restart_report(1)
    assert report["outcome"] == "fell_back" and report["seq"] == 1
    assert report["attempts"][0]["seq"] == 2 and "checksum" in report["attempts"][0]["error"]
    assert numbers(user_dir / "out.txt") == list(range(1, COUNT + 1))


def test_image_with_another_users_credentials_is_refused(
    test_user: pwd.struct_passwd, user_dir: Path, store_root: Path, job_id: int
) -> None:
    other = pwd.getpwnam("ckpt-bob")
    bob_dir = Path("/tmp/slurm-ckpt-tests") / f"bob-{os.urandom(4).hex()}"
    bob_dir.mkdir(mode=0o700)
    os.chown(bob_dir, other.pw_uid, other.pw_gid)
    try:
        # Bob's checkpoint of Bob's process...
        bob = LauncherRun(other, bob_dir, store_root, job_id + 1, pipeline(bob_dir))
        wait_until(lambda: count_lines(bob_dir / "out.txt") >= 5, 30, "bob's workload")
        assert bob.request_checkpoint(1)["ok"], bob.log()
        bob.kill()
        # ...planted in Alice's folder, its manifest edited to claim Alice's uid.
        alice = LauncherRun(test_user, user_dir, store_root, job_id, pipeline(user_dir))
        wait_until(lambda: count_lines(user_dir / "out.txt") >= 5, 30, "alice's workload")
        alice.kill()
        planted = alice.jobdir / "checkpoints/000001"
        shutil.copytree(bob.jobdir / "checkpoints/000001", planted)
        manifest = json.loads((planted / "manifest.json").read_text())
        manifest.update(uid=test_user.pw_uid, gid=test_user.pw_gid, job_id=job_id)
        (planted / "manifest.json").write_text(json.dumps(manifest))
        for path in [planted, *planted.iterdir()]:
            os.chown(path, test_user.pw_uid, test_user.pw_gid)
        publish(store_root, job_id, [1], test_user)

        second = LauncherRun(
            test_user, user_dir, store_root, job_id, pipeline(user_dir), restart_count=1
        )
        assert second.wait() == 0, second.log()
    finally:
        shutil.rmtree(bob_dir, ignore_errors=True)

    report = second.restart_report(1)
    assert report["outcome"] == "fresh_start"
    assert f"uids [{other.pw_uid}]" in report["attempts"][0]["error"]
    # The fresh start ran the whole script as Alice; nothing of Bob's came back.
    assert numbers(user_dir / "out.txt")[-COUNT:] == list(range(1, COUNT + 1))


def test_malformed_request_is_reported_and_the_job_keeps_running(
    test_user: pwd.struct_passwd, user_dir: Path, store_root: Path, job_id: int
) -> None:
    run = LauncherRun(test_user, user_dir, store_root, job_id, pipeline(user_dir))
    wait_until(lambda: count_lines(user_dir / "out.txt") >= 5, 30, "the workload to start")
    (run.jobdir / "request.json").write_text(json.dumps({"job_id": job_id, "seq": "../../etc"}))
    os.kill(run.proc.pid, 10)  # SIGUSR1

    rejected = run.jobdir / "results" / "rejected-request.txt"
    wait_until(rejected.exists, 30, "the request to be rejected")
    assert run.wait() == 0, run.log()

    assert "seq must be an integer" in rejected.read_text()
    assert not list((run.jobdir / "checkpoints").iterdir())
    assert numbers(user_dir / "out.txt") == list(range(1, COUNT + 1))


def test_tcp_connection_to_outside_fails_the_dump_with_criu_reason_and_job_goes_on(
    test_user: pwd.struct_passwd, user_dir: Path, store_root: Path, job_id: int
) -> None:
    script = user_dir / "tcp_holder.py"
    shutil.copy(WORKLOADS / "tcp_holder.py", script)
    out = user_dir / "tcp.txt"
    # PostgreSQL listens on our machines; any server outside the tree will do.
    run = LauncherRun(
        test_user,
        user_dir,
        store_root,
        job_id,
        ["/usr/bin/python3", str(script), "127.0.0.1", "5432", "3", str(out)],
    )
    wait_until(lambda: count_lines(out) >= 1, 30, "the connection")

    result = run.request_checkpoint(1)
    assert run.wait() == 0, run.log()

    assert result["ok"] is False
    assert "tcp" in result["error"].lower() or "socket" in result["error"].lower(), result
    # The reason is the failing step's, not CRIU's closing summary, and it names the
    # whole log, which stays in the job's logs folder.
    assert "Dumping FAILED" not in result["error"], result
    log = run.jobdir / "logs" / "dump-000001.log"
    assert f"(CRIU's log: {log})" in result["error"], result
    assert "Dumping FAILED" in log.read_text()
    assert not (run.jobdir / "checkpoints" / "000001").exists()
    assert not list((run.jobdir / "staging").iterdir())
    assert out.read_text() == "connected\ndone\n"
