"""Files the tree has open for writing: recorded while it is frozen, rolled back before a restore.

CRIU records no size for files opened write-only with O_APPEND (Slurm's job
output, `>>` redirections) and refuses any other writable file whose size
changed ("bad size"). Without a rollback, lines written after a checkpoint
appear twice after a restore. So at each dump we record every regular file the
tree has open for writing with its size, copy the small ones into the image
(Slurm truncates a requeued job's output unless it runs in append mode), and
before a restore put each back to its recorded state.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from slurm_ckpt.errors import LauncherError
from slurm_ckpt.store.manifest import OpenFile

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


def _fd_flags(pid: int, fd: str) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise LauncherError(f"no flags in /proc/{pid}/fdinfo/{fd}")


def writable_files(pids: Iterable[int]) -> dict[str, tuple[int, bool]]:
    """Regular files open for writing by any of `pids`: path -> (size, opened with O_APPEND)."""
    found: dict[str, tuple[int, bool]] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            link = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(link)
                if not target.startswith("/") or target.endswith(" (deleted)"):
                    continue  # pipes, sockets, anonymous inodes; CRIU keeps deleted files itself
                flags = _fd_flags(pid, fd)
                if flags & os.O_ACCMODE not in (os.O_WRONLY, os.O_RDWR):
                    continue
                st = os.stat(link)
            except (FileNotFoundError, ProcessLookupError):
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            append = bool(flags & os.O_APPEND)
            previous = found.get(target)
            found[target] = (st.st_size, append or (previous[1] if previous else False))
    return found


def _copy_prefix(source: str, dest: Path, size: int) -> None:
    """Copy the first `size` bytes of `source` (the file may have grown since)."""
    remaining = size
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while remaining > 0:
            chunk = src.read(min(_COPY_CHUNK, remaining))
            if not chunk:
                raise LauncherError(f"{source} shrank below {size} bytes while being saved")
            dst.write(chunk)
            remaining -= len(chunk)


def record(pids: Iterable[int], images: Path, copy_max_bytes: int) -> list[OpenFile]:
    """Record the tree's writable files; copy those up to `copy_max_bytes` into `images`."""
    entries = []
    for index, (path, (size, append)) in enumerate(sorted(writable_files(pids).items())):
        copy = None
        if size <= copy_max_bytes:
            copy = f"openfile-{index:04d}.data"
            _copy_prefix(path, images / copy, size)
        entries.append(OpenFile(path=path, size=size, append=append, saved_copy=copy))
    return entries


def roll_back(files: Iterable[OpenFile], images: Path) -> None:
    """Put every recorded file back to its state at dump time.

    Raises LauncherError when a file cannot be put back (shorter than recorded
    and no copy kept): restoring then would lose or repeat output.
    """
    for entry in files:
        if entry.saved_copy is not None:
            # Rewrite in place: other processes (slurmstepd) may hold the file open.
            with open(images / entry.saved_copy, "rb") as src, open(entry.path, "ab+") as dst:
                dst.seek(0)
                fd = dst.fileno()
                os.ftruncate(fd, 0)
                while chunk := src.read(_COPY_CHUNK):
                    os.write(fd, chunk)
                os.ftruncate(fd, entry.size)
            log.info("rolled back %s from its copy (%d bytes)", entry.path, entry.size)
            continue
        try:
            current = os.stat(entry.path).st_size
        except FileNotFoundError as exc:
            raise LauncherError(f"{entry.path} is gone and the image keeps no copy") from exc
        if current < entry.size:
            raise LauncherError(
                f"{entry.path} has {current} bytes, fewer than the {entry.size} at the checkpoint,"
                " and the image keeps no copy"
            )
        if current > entry.size:
            os.truncate(entry.path, entry.size)
            log.info("truncated %s from %d to %d bytes", entry.path, current, entry.size)
