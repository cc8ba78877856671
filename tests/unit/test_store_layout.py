from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_ckpt.errors import BadPath, MissingUserDir, StoreError, UnsafeJobDir
from slurm_ckpt.store.folders import ensure_job_dir, ensure_user_dir
from slurm_ckpt.store.layout import (
    JobDir,
    check_seq,
    inside,
    parse_job_id,
)

from .store_helpers import ME, make_job


@pytest.mark.parametrize("text", ["1", "42", "4294967295"])
def test_parse_job_id_accepts_positive_decimals(text: str) -> None:
    assert parse_job_id(text) == int(text)


@pytest.mark.parametrize(
    "text", ["", "0", "-1", "+1", " 1", "1 ", "01", "1_2", "1.0", "0x10", "١٢", "4294967296", "a"]
)
def test_parse_job_id_rejects_everything_else(text: str) -> None:
    with pytest.raises(BadPath) as info:
        parse_job_id(text)
    assert "\n" not in str(info.value)


def test_job_dir_paths(tmp_path: Path) -> None:
    job = JobDir(tmp_path, "alice", 77)
    assert job.user_dir == tmp_path / "alice"
    assert job.path == tmp_path / "alice" / "77"
    assert job.checkpoint(3) == tmp_path / "alice" / "77" / "checkpoints" / "000003"
    assert job.result_file(12) == tmp_path / "alice" / "77" / "results" / "000012.json"
    assert job.staging_dir == job.path / "staging"
    assert job.request_file == job.path / "request.json"
    assert job.images_list == job.path / "images.json"
    assert job.log_file == job.path / "launcher.log"
    assert job.script_copy == job.path / "job-script"


@pytest.mark.parametrize("seq", [0, -1, 1_000_000, True])
def test_bad_seq_is_refused(tmp_path: Path, seq: int) -> None:
    with pytest.raises(BadPath):
        JobDir(tmp_path, ME, 1).checkpoint(seq)
    with pytest.raises(BadPath):
        check_seq(seq)


@pytest.mark.parametrize("job_id", [0, -3, True, 2**32])
def test_bad_job_id_in_job_dir_is_refused(tmp_path: Path, job_id: int) -> None:
    with pytest.raises(BadPath):
        JobDir(tmp_path, ME, job_id)


def test_empty_or_missing_job_has_no_committed_checkpoint(tmp_path: Path) -> None:
    job = JobDir(tmp_path, ME, 5)
    assert job.committed_seqs() == []
    make_job(tmp_path, 5)
    assert job.committed_seqs() == []


def test_committed_seqs_lists_only_six_digit_folders(tmp_path: Path) -> None:
    job = make_job(tmp_path, 5)
    for name in ("000003", "000001", "000010"):
        (job.checkpoints_dir / name).mkdir()
    (job.checkpoints_dir / "000000").mkdir()
    (job.checkpoints_dir / "00002").mkdir()
    (job.checkpoints_dir / "0000020").mkdir()
    (job.checkpoints_dir / "junk").mkdir()
    (job.checkpoints_dir / "000007").write_text("a file, not a folder")
    (job.checkpoints_dir / "000008").symlink_to(job.checkpoints_dir / "000001")
    assert job.committed_seqs() == [1, 3, 10]


def test_ensure_job_dir_creates_private_folders(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        job = make_job(tmp_path, 9)
    finally:
        os.umask(old)
    for folder in (job.path, job.checkpoints_dir, job.staging_dir, job.results_dir):
        assert folder.is_dir()
        assert folder.stat().st_mode & 0o777 == 0o700
    # A second call accepts what the first made.
    assert make_job(tmp_path, 9) == job


def test_ensure_job_dir_refuses_missing_root(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="store root"):
        ensure_job_dir(tmp_path / "absent", ME, 1)
    assert not (tmp_path / "absent").exists()


def test_ensure_job_dir_refuses_symlinked_job_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    root = tmp_path / "root"
    root.mkdir()
    make_job(root, 1)
    (root / ME / "3").symlink_to(elsewhere)
    with pytest.raises(UnsafeJobDir, match="symlink"):
        ensure_job_dir(root, ME, 3)
    assert list(elsewhere.iterdir()) == []


def test_ensure_job_dir_refuses_symlinked_subfolder(tmp_path: Path) -> None:
    job = make_job(tmp_path, 3)
    job.staging_dir.rmdir()
    job.staging_dir.symlink_to(tmp_path)
    with pytest.raises(UnsafeJobDir, match="staging"):
        make_job(tmp_path, 3)


def test_ensure_job_dir_refuses_a_file(tmp_path: Path) -> None:
    make_job(tmp_path, 1)
    (tmp_path / ME / "3").write_text("")
    with pytest.raises(UnsafeJobDir):
        make_job(tmp_path, 3)


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o710, 0o777])
def test_ensure_job_dir_refuses_open_modes(tmp_path: Path, mode: int) -> None:
    make_job(tmp_path, 1)
    folder = tmp_path / ME / "3"
    folder.mkdir()
    os.chmod(folder, mode)
    with pytest.raises(UnsafeJobDir, match="mode"):
        make_job(tmp_path, 3)
    assert os.stat(folder).st_mode & 0o777 == mode  # refused, not "fixed"


def test_ensure_job_dir_refuses_another_users_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_job(tmp_path, 1)
    folder = tmp_path / ME / "3"
    folder.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(folder, 12345, 12345)
    else:
        # Without root no folder of another uid can be made: be another uid instead.
        real_uid = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real_uid + 1)
    with pytest.raises(UnsafeJobDir, match="owned by uid"):
        ensure_job_dir(tmp_path, ME, 3)


def test_a_job_folder_needs_the_users_own_folder_first(tmp_path: Path) -> None:
    with pytest.raises(MissingUserDir, match="slurm-ckptd creates it"):
        ensure_job_dir(tmp_path, ME, 3)
    assert list(tmp_path.iterdir()) == []


def test_the_user_folder_is_made_private_for_its_owner(tmp_path: Path) -> None:
    path = ensure_user_dir(tmp_path, ME, os.geteuid(), os.getegid())
    st = path.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (os.geteuid(), 0o700)
    assert ensure_user_dir(tmp_path, ME, os.geteuid(), os.getegid()) == path


def test_a_user_folder_someone_else_planted_is_refused(tmp_path: Path) -> None:
    (tmp_path / "victim").symlink_to(tmp_path)
    with pytest.raises(UnsafeJobDir, match="symlink"):
        ensure_user_dir(tmp_path, "victim", os.geteuid(), os.getegid())
    (tmp_path / "other").mkdir(mode=0o700)
    with pytest.raises(UnsafeJobDir, match="owned by uid"):
        ensure_user_dir(tmp_path, "other", os.geteuid() + 1, os.getegid())


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-x", "a/b", "a\x00", "x" * 65])
def test_bad_user_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadPath):
        JobDir(tmp_path, name, 1)


@pytest.mark.parametrize("name", ["a", "sub/b", "./c", "d/./e"])
def test_inside_accepts_names_below_base(tmp_path: Path, name: str) -> None:
    assert inside(tmp_path, name) == (tmp_path / name).resolve()


@pytest.mark.parametrize(
    "name", ["", ".", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "a\0b", "sub/../.."]
)
def test_inside_rejects_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadPath):
        inside(tmp_path, name)


def test_inside_rejects_symlink_escape(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (tmp_path / "secret").write_text("x")
    (base / "link").symlink_to(tmp_path)
    (base / "ok").symlink_to(base / "real")
    with pytest.raises(BadPath):
        inside(base, "link/secret")
    assert inside(base, "ok") == base.resolve() / "real"


def test_inside_rejects_non_strings(tmp_path: Path) -> None:
    with pytest.raises(BadPath):
        inside(tmp_path, 3)  # type: ignore[arg-type]
