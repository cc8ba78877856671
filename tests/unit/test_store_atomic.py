from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_ckpt.errors import StoreError
from slurm_ckpt.store.atomic import fsync_dir, write_atomic
from slurm_ckpt.store.checksum import ALGORITHM, CHUNK_SIZE, hash_file


def test_write_atomic_writes_with_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two", mode=0o640)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["f.json"]


def test_write_atomic_keeps_old_content_when_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, b"old")

    def broken_rename(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(StoreError, match="Input/output error"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["f.json"]


def test_write_atomic_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StoreError):
        write_atomic(tmp_path / "link" / "f", b"x")
    assert list(real.iterdir()) == []


def test_write_atomic_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "f").symlink_to(victim)
    write_atomic(tmp_path / "f", b"new")
    assert victim.read_bytes() == b"keep"
    assert not (tmp_path / "f").is_symlink()


def test_fsync_dir_raises_store_error_for_missing_folder(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(StoreError):
        fsync_dir(tmp_path / "nope")


def test_hash_file_matches_reference_vectors(tmp_path: Path) -> None:
    # Published XXH3-128 test vectors (seed 0).
    assert ALGORITHM == "xxh3_128"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty) == "99aa06d3014798d86001c324468d497f"


def test_hash_file_streams_and_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "big"
    data = os.urandom(CHUNK_SIZE * 2 + 123)
    path.write_bytes(data)
    seen: list[int] = []
    digest = hash_file(path, seen.append)
    assert seen == [CHUNK_SIZE, CHUNK_SIZE * 2, len(data)]
    flipped = bytearray(data)
    flipped[CHUNK_SIZE + 7] ^= 1
    path.write_bytes(bytes(flipped))
    assert hash_file(path) != digest
    path.write_bytes(data)
    assert hash_file(path) == digest
