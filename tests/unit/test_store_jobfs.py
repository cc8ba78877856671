"""store.jobfs: the only way the service touches a job's folder.

These run as whoever runs the tests (the folder's owner is the caller); the
identity switch itself, between real users, is tested in
tests/integration/test_jobfs_identity.py.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from slurm_ckpt.errors import ImageCorrupt, StoreError
from slurm_ckpt.store import fdwalk, jobfs, untrusted
from slurm_ckpt.store.identity import StoreTimeout
from slurm_ckpt.store.jobfs import JobFiles, JobRef
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.writer import begin_checkpoint, commit_checkpoint

from .store_helpers import ME as MY_NAME
from .store_helpers import make_job

ME = JobRef(MY_NAME, 7, os.geteuid())


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    make_job(root, ME.slurm_job_id)
    return root


def _commit(store: Path, seq: int) -> Path:
    job = JobDir(store, MY_NAME, ME.slurm_job_id)
    staging = begin_checkpoint(job, seq)
    (staging / "pages-1.img").write_bytes(b"x" * 1000)
    path, _ = commit_checkpoint(
        job,
        staging,
        seq=seq,
        uid=ME.uid,
        gid=os.getegid(),
        criu_version="4.1",
        kernel="6.1",
        dump_seconds=0.1,
        freeze_seconds=0.05,
    )
    return path


def test_requests_and_image_list_are_written_atomically(store: Path) -> None:
    files = JobFiles(store)
    files.write_request(ME, b'{"seq": 1}')
    files.write_final_request(ME, b'{"seq": 2}')
    files.publish(ME, b'{"images": []}')
    folder = store / MY_NAME / str(ME.slurm_job_id)
    assert (folder / "request.json").read_bytes() == b'{"seq": 1}'
    assert (folder / "final-request.json").read_bytes() == b'{"seq": 2}'
    assert (folder / "images.json").read_bytes() == b'{"images": []}'
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("mark", ["file", "symlink"])
def test_a_request_is_taken_back_once_the_launcher_marked_its_workload_ended(
    store: Path, tmp_path: Path, mark: str
) -> None:
    files = JobFiles(store)
    folder = store / MY_NAME / str(ME.slurm_job_id)
    assert files.write_request(ME, b'{"seq": 1}') is True
    ended = folder / "ended"
    if mark == "file":
        ended.write_text("0\n")
    else:
        ended.symlink_to(tmp_path / "nowhere")  # seen, never followed

    assert files.write_request(ME, b'{"seq": 2}') is False

    assert not (folder / "request.json").exists()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_a_missing_job_folder_is_a_clear_error_or_the_default(store: Path) -> None:
    files = JobFiles(store)
    other = JobRef(MY_NAME, 8, ME.uid)
    assert not files.exists(other)
    assert files.read_result(other, 1) is None
    with pytest.raises(StoreError, match="does not exist"):
        files.write_request(other, b"{}")


def test_a_job_folder_that_is_a_symlink_is_refused(store: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store / MY_NAME / "8").symlink_to(elsewhere)
    with pytest.raises(untrusted.Untrusted, match="symlink"):
        JobFiles(store).write_request(JobRef(MY_NAME, 8, ME.uid), b"{}")
    assert list(elsewhere.iterdir()) == []


def test_a_folder_of_another_uid_is_refused(store: Path) -> None:
    # Refused as not the owner's folder (or, as root, already by the owner's rights).
    with pytest.raises(StoreError):
        JobFiles(store).write_request(JobRef(MY_NAME, ME.slurm_job_id, ME.uid + 1), b"{}")
    assert not (store / MY_NAME / str(ME.slurm_job_id) / "request.json").exists()


def test_results_are_read_bounded(store: Path) -> None:
    files = JobFiles(store)
    results = store / MY_NAME / str(ME.slurm_job_id) / "results"
    (results / "000001.json").write_text(json.dumps({"seq": 1, "ok": True}))
    assert files.read_result(ME, 1) == {"seq": 1, "ok": True}
    (results / "000002.json").write_bytes(b"[" * 65536)
    with pytest.raises(untrusted.Untrusted, match="nested"):
        files.read_result(ME, 2)
    os.mkfifo(results / "000003.json")
    with pytest.raises(untrusted.Untrusted, match="not a regular file"):
        files.read_result(ME, 3)
    (results / "000004.json").write_bytes(b" " * (jobfs.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(untrusted.Untrusted, match="larger"):
        files.read_result(ME, 4)


def test_a_results_folder_swapped_for_a_symlink_is_refused(store: Path, tmp_path: Path) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "000001.json").write_text(json.dumps({"seq": 1, "ok": True}))
    results = store / MY_NAME / str(ME.slurm_job_id) / "results"
    results.rmdir()
    results.symlink_to(decoy)
    with pytest.raises(untrusted.Untrusted, match="symlink"):
        JobFiles(store).read_result(ME, 1)


def test_verify_returns_the_manifest_bytes_it_checked(store: Path) -> None:
    path = _commit(store, 1)
    manifest, raw = JobFiles(store).verify(ME, 1, read_data=True)
    assert manifest.seq == 1 and raw == (path / "manifest.json").read_bytes()


def test_a_manifest_swapped_for_a_symlink_is_corrupt_not_followed(store: Path) -> None:
    path = _commit(store, 1)
    (path / "manifest.json").unlink()
    (path / "manifest.json").symlink_to("/etc/passwd")
    with pytest.raises(ImageCorrupt, match="symlink"):
        JobFiles(store).verify(ME, 1)


def test_checkpoints_are_deleted_without_following_links(store: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep").write_text("keep")
    path = _commit(store, 1)
    (path / "link").symlink_to(precious)
    files = JobFiles(store)
    assert files.delete_checkpoint(ME, 1)
    assert not path.exists() and (precious / "keep").read_text() == "keep"
    assert files.delete_checkpoint(ME, 1)  # already gone is gone


def test_a_checkpoints_folder_swapped_for_a_symlink_deletes_nothing(
    store: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    (victim / "000001").mkdir(parents=True)
    (victim / "000001" / "pages-1.img").write_text("image")
    checkpoints = store / MY_NAME / str(ME.slurm_job_id) / "checkpoints"
    checkpoints.rmdir()
    checkpoints.symlink_to(victim)
    with pytest.raises(untrusted.Untrusted):
        JobFiles(store).delete_checkpoint(ME, 1)
    assert (victim / "000001" / "pages-1.img").read_text() == "image"


def test_staging_is_cleaned_but_a_symlinked_staging_is_not_followed(
    store: Path, tmp_path: Path
) -> None:
    files = JobFiles(store)
    job = JobDir(store, MY_NAME, ME.slurm_job_id)
    (job.staging_dir / "000001.abc").mkdir()
    (job.staging_dir / "000001.abc" / "pages-1.img").write_text("half")
    assert files.clean_staging(ME) == ["000001.abc"]
    assert list(job.staging_dir.iterdir()) == []
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    job.staging_dir.rmdir()
    job.staging_dir.symlink_to(victim)
    with pytest.raises(untrusted.Untrusted):
        files.clean_staging(ME)
    assert (victim / "precious").read_text() == "keep"


def test_a_stuck_operation_times_out_and_quarantines_only_its_job(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_entries = fdwalk.list_entries

    def stuck(dir_fd: int) -> list[os.DirEntry[str]]:
        release.wait(10)
        return real_entries(dir_fd)

    files = JobFiles(store, timeout=0.2)
    monkeypatch.setattr(fdwalk, "list_entries", stuck)
    with pytest.raises(StoreTimeout, match="within 0.2s"):
        files.clean_staging(ME)
    monkeypatch.setattr(fdwalk, "list_entries", real_entries)
    # While the stuck one runs, the job fails fast; other jobs are served.
    with pytest.raises(StoreTimeout, match="still stuck"):
        files.read_result(ME, 1)
    make_job(store, 9)
    assert files.read_result(JobRef(MY_NAME, 9, ME.uid), 1) is None
    release.set()
    for _ in range(100):
        try:
            assert files.read_result(ME, 1) is None
            break
        except StoreTimeout:
            threading.Event().wait(0.05)
    else:
        pytest.fail("the job stayed quarantined after its operation returned")


def test_removal_of_a_deep_tree_is_bounded_and_never_recurses(store: Path) -> None:
    files = JobFiles(store)
    staging = JobDir(store, MY_NAME, ME.slurm_job_id).staging_dir
    deep = staging / "000001.x"
    path = deep
    for _ in range(fdwalk.MAX_DEPTH + 5):
        path = path / "d"
    path.mkdir(parents=True)
    with pytest.raises(untrusted.Untrusted, match="nested deeper"):
        files.clean_staging(ME)
    shallow = staging / "000002.y" / "a" / "b"
    shallow.mkdir(parents=True)
    (shallow / "f").write_text("x")
    os.mkfifo(staging / "000002.y" / "fifo")  # removed, never opened
    shutil.rmtree(deep)
    assert files.clean_staging(ME) == ["000002.y"]
    assert list(staging.iterdir()) == []


def test_hashing_stops_at_the_recorded_size(store: Path) -> None:
    path = _commit(store, 1)
    with open(path / "pages-1.img", "ab") as grown:
        grown.write(b"more")  # grows after the manifest was written
    os.truncate(path / "pages-1.img", 1000)  # back to its size: verifies
    JobFiles(store).verify(ME, 1, read_data=True)
    with open(path / "pages-1.img", "ab") as grown:
        grown.write(b"more")
    with pytest.raises(ImageCorrupt):
        JobFiles(store).verify(ME, 1, read_data=True)
