"""Recording files open for writing, and putting them back before a restore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_ckpt.errors import LauncherError
from slurm_ckpt.launcher import openfiles
from slurm_ckpt.launcher.session import exit_code
from slurm_ckpt.store.manifest import OpenFile


def test_writable_files_of_this_process_are_found_with_size_and_append_flag(
    tmp_path: Path,
) -> None:
    appended, written, read = tmp_path / "a.log", tmp_path / "w.dat", tmp_path / "r.txt"
    read.write_text("only read")
    with open(appended, "a") as fa, open(written, "w") as fw, open(read) as _:
        fa.write("12345")
        fa.flush()
        fw.write("xy")
        fw.flush()
        found = openfiles.writable_files([os.getpid()])
    assert found[str(appended)] == (5, True)
    assert found[str(written)] == (2, False)
    assert str(read) not in found


def test_record_copies_small_files_only(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    small, big = tmp_path / "small.out", tmp_path / "big.out"
    with open(small, "a") as fs, open(big, "a") as fb:
        fs.write("line 1\n")
        fs.flush()
        fb.write("x" * 100)
        fb.flush()
        entries = {e.path: e for e in openfiles.record([os.getpid()], images, copy_max_bytes=50)}
    assert entries[str(small)].saved_copy is not None
    assert (images / str(entries[str(small)].saved_copy)).read_text() == "line 1\n"
    assert entries[str(big)].saved_copy is None and entries[str(big)].size == 100


def test_roll_back_truncates_to_the_recorded_size(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("1\n2\n3\n")
    openfiles.roll_back([OpenFile(path=str(f), size=4, append=True, saved_copy=None)], tmp_path)
    assert f.read_text() == "1\n2\n"


def test_roll_back_rewrites_a_truncated_file_from_its_copy(tmp_path: Path) -> None:
    f = tmp_path / "slurm.out"
    f.write_text("")  # Slurm truncated it when the job started again
    (tmp_path / "copy").write_text("1\n2\n")
    entry = OpenFile(path=str(f), size=4, append=True, saved_copy="copy")
    openfiles.roll_back([entry], tmp_path)
    assert f.read_text() == "1\n2\n"


def test_roll_back_refuses_a_shrunk_file_without_a_copy(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_text("12")
    with pytest.raises(LauncherError, match="fewer than the 10"):
        openfiles.roll_back([OpenFile(str(f), 10, False, None)], tmp_path)


def test_roll_back_refuses_a_missing_file_without_a_copy(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="is gone"):
        openfiles.roll_back([OpenFile(str(tmp_path / "nope"), 1, False, None)], tmp_path)


@pytest.mark.parametrize(("status", "code"), [(7 << 8, 7), (0, 0), (9, 137), (15, 143)])
def test_exit_code_like_a_shell(status: int, code: int) -> None:
    assert exit_code(status) == code
