from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_ckpt.errors import CheckpointExists, StoreError
from slurm_ckpt.store import writer
from slurm_ckpt.store.atomic import write_atomic
from slurm_ckpt.store.checksum import ALGORITHM, hash_file
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import MANIFEST_NAME, Manifest, OpenFile
from slurm_ckpt.store.writer import (
    abort_checkpoint,
    begin_checkpoint,
    clean_staging,
    commit_checkpoint,
)

from .store_helpers import ME, make_job


def _fields(seq: int) -> dict[str, object]:
    return {
        "seq": seq,
        "uid": 1000,
        "gid": 100,
        "criu_version": "4.1.1",
        "kernel": "6.18",
        "dump_seconds": 0.4,
        "freeze_seconds": 0.1,
    }


def _commit(job: JobDir, staging: Path, seq: int, **extra: object) -> tuple[Path, Manifest]:
    return commit_checkpoint(job, staging, **_fields(seq), **extra)  # type: ignore[arg-type]


def _dump(job: JobDir, seq: int, files: dict[str, bytes]) -> Path:
    staging = begin_checkpoint(job, seq)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    return staging


def test_begin_creates_private_staging_folder(tmp_path: Path) -> None:
    job = make_job(tmp_path, 1)
    staging = begin_checkpoint(job, 4)
    assert staging.parent == job.staging_dir
    assert staging.name.startswith("000004.")
    assert staging.stat().st_mode & 0o777 == 0o700
    assert begin_checkpoint(job, 4) != staging


def test_commit_moves_staging_into_checkpoints_with_manifest(tmp_path: Path) -> None:
    job = make_job(tmp_path, 7)
    staging = _dump(job, 1, {"pages-1.img": b"x" * 5000, "core-1.img": b"core", "out": b"hi"})
    progress: list[tuple[int, int]] = []
    out = OpenFile("/home/u/slurm-7.out", 2, True, "out")
    final, manifest = _commit(
        job,
        staging,
        1,
        open_files=[out],
        restart_count=2,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert final == job.checkpoint(1)
    assert not staging.exists()
    assert job.committed_seqs() == [1]
    assert sorted(os.listdir(final)) == ["core-1.img", MANIFEST_NAME, "out", "pages-1.img"]
    assert Manifest.from_json((final / MANIFEST_NAME).read_bytes()) == manifest
    assert (manifest.job_id, manifest.seq, manifest.uid, manifest.gid) == (7, 1, 1000, 100)
    assert manifest.restart_count == 2
    assert manifest.open_files == (out,)
    assert manifest.checksum_algorithm == ALGORITHM
    assert [f.name for f in manifest.files] == ["core-1.img", "out", "pages-1.img"]
    for entry in manifest.files:
        assert entry.size == (final / entry.name).stat().st_size
        assert entry.checksum == hash_file(final / entry.name)
    assert progress[-1] == (5006, 5006)
    assert manifest.created_at.utcoffset() is not None


def test_manifest_is_written_after_every_image_file_and_before_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(tmp_path, 7)
    staging = _dump(job, 1, {"a.img": b"a", "b.img": b"b"})
    events: list[str] = []
    real_hash, real_write, real_rename = hash_file, write_atomic, os.rename

    def hash_spy(path: Path, progress: object = None) -> str:
        events.append(f"hash {path.name}")
        return real_hash(path)

    def write_spy(path: Path, data: bytes, mode: int = 0o600) -> None:
        events.append(f"write {path.name} in {path.parent.parent.name}")
        real_write(path, data, mode)

    def rename_spy(src: Path, dst: Path, **kwargs: int) -> None:
        if kwargs:  # write_atomic's own rename, relative to a folder fd
            real_rename(src, dst, **kwargs)
            return
        assert (Path(src) / MANIFEST_NAME).is_file()
        events.append(f"rename to {Path(dst).parent.name}")
        real_rename(src, dst)

    monkeypatch.setattr(writer, "hash_file", hash_spy)
    monkeypatch.setattr(writer, "write_atomic", write_spy)
    monkeypatch.setattr(os, "rename", rename_spy)
    _commit(job, staging, 1)
    assert events == [
        "hash a.img",
        "hash b.img",
        f"write {MANIFEST_NAME} in staging",
        "rename to checkpoints",
    ]


def test_crash_before_rename_leaves_nothing_in_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(tmp_path, 7)
    staging = _dump(job, 1, {"a.img": b"a"})

    real_rename = os.rename

    def crash(src: Path, dst: Path, **kwargs: int) -> None:
        if kwargs:  # the manifest's own rename goes through
            real_rename(src, dst, **kwargs)
            return
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(StoreError, match="Input/output error"):
        _commit(job, staging, 1)
    assert os.listdir(job.checkpoints_dir) == []
    assert job.committed_seqs() == []
    assert (staging / MANIFEST_NAME).is_file()  # left for clean_staging
    monkeypatch.undo()
    assert clean_staging(job) == [staging]
    assert os.listdir(job.staging_dir) == []


def test_crash_while_writing_manifest_leaves_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(tmp_path, 7)
    staging = _dump(job, 1, {"a.img": b"a"})

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(StoreError, match="No space left"):
        _commit(job, staging, 1)
    assert sorted(os.listdir(staging)) == ["a.img"]
    assert job.committed_seqs() == []


def test_commit_refuses_an_existing_seq(tmp_path: Path) -> None:
    job = make_job(tmp_path, 7)
    first, _ = _commit(job, _dump(job, 1, {"a.img": b"first"}), 1)
    again = _dump(job, 1, {"a.img": b"second"})
    with pytest.raises(CheckpointExists):
        _commit(job, again, 1)
    assert (first / "a.img").read_bytes() == b"first"
    # Even an empty folder squatting the name is not replaced.
    job.checkpoint(2).mkdir()
    with pytest.raises(CheckpointExists):
        _commit(job, _dump(job, 2, {"a.img": b"x"}), 2)


@pytest.mark.parametrize("kind", ["folder", "symlink", "fifo", "manifest", "empty"])
def test_commit_refuses_anything_but_regular_files(tmp_path: Path, kind: str) -> None:
    job = make_job(tmp_path, 7)
    staging = _dump(job, 1, {} if kind == "empty" else {"a.img": b"a"})
    if kind == "folder":
        (staging / "sub").mkdir()
    elif kind == "symlink":
        (staging / "link").symlink_to(staging / "a.img")
    elif kind == "fifo":
        os.mkfifo(staging / "pipe")
    elif kind == "manifest":
        (staging / MANIFEST_NAME).write_text("{}")
    with pytest.raises(StoreError):
        _commit(job, staging, 1)
    assert job.committed_seqs() == []


def test_commit_refuses_a_foreign_staging_folder(tmp_path: Path) -> None:
    job = make_job(tmp_path, 7)
    other = make_job(tmp_path, 8)
    with pytest.raises(StoreError, match="not a staging folder"):
        _commit(job, _dump(other, 1, {"a.img": b"a"}), 1)
    with pytest.raises(StoreError, match="not a staging folder"):
        _commit(job, _dump(job, 2, {"a.img": b"a"}), 1)


def test_abort_removes_staging(tmp_path: Path) -> None:
    job = make_job(tmp_path, 7)
    staging = _dump(job, 1, {"a.img": b"a"})
    abort_checkpoint(staging)
    assert not staging.exists()
    abort_checkpoint(staging)  # already gone is fine


def test_clean_staging_removes_every_leftover(tmp_path: Path) -> None:
    job = make_job(tmp_path, 7)
    kept, _ = _commit(job, _dump(job, 1, {"a.img": b"a"}), 1)
    left = [_dump(job, 2, {"a.img": b"a"}), _dump(job, 3, {})]
    (job.staging_dir / "stray").write_text("")
    removed = clean_staging(job)
    assert sorted(removed) == sorted([*left, job.staging_dir / "stray"])
    assert os.listdir(job.staging_dir) == []
    assert job.committed_seqs() == [1] and kept.is_dir()
    assert clean_staging(job) == []
    assert clean_staging(JobDir(tmp_path, ME, 99)) == []
