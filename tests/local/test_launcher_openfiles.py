"""Recording files open for writing, and putting them back before a restore."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

import pytest
import xxhash

from slurm_ckpt.errors import LauncherError
from slurm_ckpt.launcher import openfiles
from slurm_ckpt.launcher.session import exit_code
from slurm_ckpt.store.manifest import OpenFile


def kind(file: openfiles.Writable) -> tuple[int, bool, bool]:
    return file.size, file.append, file.in_place


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
    assert kind(found[str(appended)]) == (5, True, False)
    assert kind(found[str(written)]) == (2, False, True)
    assert str(read) not in found


def _content(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def test_roll_back_truncates_a_file_only_appended_to_since(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("1\n2\n3\n")
    entry = OpenFile(str(f), 4, True, saved_copy=None, content=_content(b"1\n2\n"))
    openfiles.roll_back([entry], tmp_path)
    assert f.read_text() == "1\n2\n"


@pytest.mark.parametrize("now", [b"1\n9\n3\n", b"X\n2\n"])
def test_roll_back_refuses_a_file_changed_in_place_and_leaves_every_file_alone(
    tmp_path: Path, now: bytes
) -> None:
    changed, other = tmp_path / "data", tmp_path / "log"
    changed.write_bytes(now)
    other.write_text("a\nb\n")
    entries = [
        OpenFile(str(other), 2, True, saved_copy=None, content=_content(b"a\n")),
        OpenFile(str(changed), 4, False, saved_copy=None, content=_content(b"1\n2\n")),
    ]
    with pytest.raises(LauncherError, match=f"{changed} was changed in place"):
        openfiles.roll_back(entries, tmp_path)
    assert changed.read_bytes() == now and other.read_text() == "a\nb\n"


def test_roll_back_refuses_a_file_with_neither_copy_nor_checksum(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("1\n2\n")
    with pytest.raises(LauncherError, match="neither a copy"):
        openfiles.roll_back([OpenFile(str(f), 2, True, saved_copy=None)], tmp_path)


def _map(path: Path, flags: int) -> int:
    """mmap `path` read-write with `flags` and close its descriptor (Python's mmap keeps one)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    fd = os.open(path, os.O_RDWR)
    try:
        address = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
    finally:
        os.close(fd)
    assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    return int(address)


def test_a_file_mapped_shared_and_writable_is_found_without_a_descriptor(
    tmp_path: Path,
) -> None:
    shared, private = tmp_path / "memmap.dat", tmp_path / "private.dat"
    for path in (shared, private):
        path.write_bytes(b"\0" * 4096)
    libc = ctypes.CDLL(None)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    addresses = [_map(shared, mmap.MAP_SHARED), _map(private, mmap.MAP_PRIVATE)]
    try:
        found = openfiles.writable_files([os.getpid()])
    finally:
        for address in addresses:
            libc.munmap(address, 4096)
    assert kind(found[str(shared)]) == (4096, False, True)
    assert str(private) not in found


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


def test_a_zombie_is_recognised_and_has_no_writable_files() -> None:
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        for _ in range(200):  # until the child has exited
            if openfiles.is_zombie(child):
                break
            time.sleep(0.01)
        assert openfiles.is_zombie(child)
        assert not openfiles.is_zombie(os.getpid())
        assert openfiles.writable_files([child]) == {}
    finally:
        os.waitpid(child, 0)
    assert not openfiles.is_zombie(child)  # reaped: gone


def test_a_deleted_open_file_is_left_to_criu(tmp_path: Path) -> None:
    path = tmp_path / "scratch"
    with open(path, "w") as f:
        f.write("x")
        f.flush()
        path.unlink()
        found = openfiles.writable_files([os.getpid()])
    assert not [p for p in found if p.startswith(str(path))]


def test_an_open_file_unlinked_under_one_name_but_linked_under_another_is_refused(
    tmp_path: Path,
) -> None:
    path, other = tmp_path / "data", tmp_path / "data.bak"
    with open(path, "w"):
        os.link(path, other)
        path.unlink()
        with pytest.raises(LauncherError, match=f"{path} was renamed or unlinked"):
            openfiles.writable_files([os.getpid()])


def test_leases_are_read_from_proc_locks(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    locks.write_text(
        "1: POSIX  ADVISORY  WRITE 59542 fe:00:1517250 0 EOF\n"
        "2: LEASE  ACTIVE    WRITE 4242 fe:01:777 0 EOF\n"
        "3: LEASE  BREAKER   READ  4243 08:10:12 0 EOF\n"
        "3: -> LEASE  ACTIVE    READ  4244 08:10:12 0 EOF\n"
    )
    assert openfiles.leased_inodes(locks) == {(0xFE, 0x01, 777), (0x08, 0x10, 12)}


def test_a_leased_file_with_its_stamp_unchanged_is_kept_and_a_written_one_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "leased.dat"
    path.write_bytes(b"12345")
    entry = OpenFile(str(path), 5, False, None, stamp=openfiles.stamp(path.stat()))
    openfiles.roll_back([entry], tmp_path)
    assert path.read_bytes() == b"12345"
    with open(path, "r+b") as f:
        f.write(b"9")
    with pytest.raises(LauncherError, match="held a lease"):
        openfiles.roll_back([entry], tmp_path)


def test_a_file_equal_to_its_copy_is_not_written_and_keeps_its_mtime(tmp_path: Path) -> None:
    f, copy = tmp_path / "mapped.dat", tmp_path / "copy"
    f.write_bytes(b"a" * 5000)
    copy.write_bytes(b"a" * 5000)
    os.utime(f, ns=(1_000_000_000, 2_000_000_000))
    openfiles.roll_back([OpenFile(str(f), 5000, False, saved_copy="copy")], tmp_path)
    assert f.stat().st_mtime_ns == 2_000_000_000


def test_roll_back_from_a_copy_undoes_overwrites_growth_and_truncation(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: two chunks
    for name, now in {
        "overwritten": bytes(range(256)) * 4096 + b"X" * (1 << 20),
        "grown": bytes(range(256)) * 8192 + b"more",
        "truncated": bytes(range(256)) * 100,
    }.items():
        f = tmp_path / name
        f.write_bytes(now)
        openfiles.roll_back([OpenFile(str(f), 2 << 20, False, saved_copy="copy")], tmp_path)
        assert f.read_bytes() == copy.read_bytes(), name
