"""A data file updated in place, through the launcher with real CRIU, outside Slurm:
restored exactly as it was at the checkpoint, whatever was written after it, or,
when the image keeps no copy of it, the image refused, naming the file."""

from __future__ import annotations

import json
import os
import pwd
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import write_published_images

from .launcher_helpers import LauncherRun, count_lines, make_store, remove_store, wait_until

WORKLOAD = Path(__file__).parent / "workloads" / "in_place.py"
SIZE_KIB = 64 << 10  # 64 MiB: 64 blocks of 1 MiB, of which 20 steps change at most 20
STEPS = 120
DELAY = 0.05


@pytest.fixture
def store_root(test_user: pwd.struct_passwd) -> Iterator[Path]:
    root = make_store(test_user)
    yield root
    remove_store(root)


@pytest.fixture
def job_id() -> int:
    return random.randint(900_000, 999_999)


def command(folder: Path) -> list[str]:
    script = folder / "in_place.py"
    shutil.copy(WORKLOAD, script)
    os.chmod(script, 0o644)
    return ["/usr/bin/python3", str(script), str(folder / "state.dat"), str(SIZE_KIB)]


def uninterrupted(user: pwd.struct_passwd, folder: Path) -> str:
    """What the workload prints run straight through, as the same user, elsewhere."""
    folder.mkdir(mode=0o700)
    os.chown(folder, user.pw_uid, user.pw_gid)
    done = subprocess.run(
        ["runuser", "-u", user.pw_name, "--", *command(folder), str(STEPS), "0"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def publish(store_root: Path, run: LauncherRun, seqs: list[int]) -> None:
    jobdir = JobDir(store_root, run.user.pw_name, run.job_id)
    write_published_images(jobdir, seqs)
    os.chown(jobdir.images_list, run.user.pw_uid, run.user.pw_gid)


def steps_done(run: LauncherRun) -> int:
    return count_lines(run.stdout)


def test_a_file_changed_in_place_after_two_checkpoints_is_restored_exactly(
    test_user: pwd.struct_passwd, user_dir: Path, store_root: Path, job_id: int
) -> None:
    want = uninterrupted(test_user, user_dir / "reference")
    argv = [*command(user_dir), str(STEPS), str(DELAY)]
    first = LauncherRun(test_user, user_dir, store_root, job_id, argv)
    wait_until(lambda: steps_done(first) >= 20, 60, "the workload to start")
    assert first.request_checkpoint(1)["ok"], first.log()
    wait_until(lambda: steps_done(first) >= 40, 60, "more steps")
    second_result = first.request_checkpoint(2)
    assert second_result["ok"], first.log()
    # Written in place after the newest checkpoint: the restore must take it back.
    wait_until(lambda: steps_done(first) >= 60, 60, "steps after the checkpoint")
    first.kill()
    publish(store_root, first, [2, 1])

    manifest = json.loads((first.jobdir / "checkpoints/000002/manifest.json").read_text())
    (data,) = [f for f in manifest["open_files"] if f["path"].endswith("state.dat")]
    assert data["saved_copy"] and data["size"] == SIZE_KIB << 10
    # The second checkpoint wrote only the changed blocks while frozen.
    taken = re.search(r"checkpoint 2 taken: .*, (\d+) bytes of files copied frozen", first.log())
    assert taken, first.log()
    assert 0 < int(taken.group(1)) <= (SIZE_KIB << 10) // 2, taken.group(0)

    again = LauncherRun(test_user, user_dir, store_root, job_id, argv, restart_count=1)
    assert again.wait() == 0, again.log()
    assert again.restart_report(1)["outcome"] == "restored", again.log()
    assert again.stdout.read_text() == want


def test_a_file_over_the_copy_limit_changed_in_place_refuses_the_image_by_name(
    test_user: pwd.struct_passwd, user_dir: Path, store_root: Path, job_id: int
) -> None:
    want = uninterrupted(test_user, user_dir / "reference")
    argv = [*command(user_dir), str(STEPS), str(DELAY)]
    small = {"SLURM_CKPT_LAUNCHER_COPY_MAX_BYTES": str(1 << 20)}
    first = LauncherRun(test_user, user_dir, store_root, job_id, argv, settings=small)
    wait_until(lambda: steps_done(first) >= 20, 60, "the workload to start")
    assert first.request_checkpoint(1)["ok"], first.log()
    wait_until(lambda: steps_done(first) >= 40, 60, "steps after the checkpoint")
    first.kill()
    publish(store_root, first, [1])
    manifest = json.loads((first.jobdir / "checkpoints/000001/manifest.json").read_text())
    (data,) = [f for f in manifest["open_files"] if f["path"].endswith("state.dat")]
    assert data["saved_copy"] is None and data["content"]

    # The job's own restart: the image is refused and it starts afresh (the default
    # launcher.no_image), and ends as an uninterrupted run does. Slurm truncates a
    # requeued job's output.
    first.stdout.write_text("")
    again = LauncherRun(
        test_user, user_dir, store_root, job_id, argv, restart_count=1, settings=small
    )
    assert again.wait() == 0, again.log()
    report = again.restart_report(1)
    assert report["outcome"] == "fresh_start", report
    (attempt,) = report["attempts"]
    assert attempt["seq"] == 1
    assert f"{user_dir / 'state.dat'} was changed in place" in attempt["error"], attempt
    assert again.stdout.read_text() == want
