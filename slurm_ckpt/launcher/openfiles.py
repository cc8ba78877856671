"""Files the tree can write: recorded while it is frozen, put back before a restore.

CRIU saves processes, not the files they write: a restored task reopens its
files by path and finds them as the job left them after the checkpoint. CRIU
records no size for files opened write-only with O_APPEND (Slurm's job output,
`>>` redirections) and refuses any other writable file whose size changed ("bad
size"); what was written in place after the checkpoint it does not see at all.
So at each dump we find every regular file the tree has open for writing or
maps shared and writable, and filesaver.py keeps a copy of each up to
`launcher.copy_max_bytes` in the image, or else the checksum of its content.
Before a restore each file is put back from its copy, or, checked against its
checksum, cut back to its size: a file changed in place since the checkpoint
refuses the image (LauncherError), never a silent different result.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from slurm_ckpt.errors import LauncherError
from slurm_ckpt.store.checksum import hash_prefix
from slurm_ckpt.store.manifest import OpenFile

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


def _fd_flags(pid: int, fd: str) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise LauncherError(f"no flags in /proc/{pid}/fdinfo/{fd}")


def is_zombie(pid: int) -> bool:
    """True when `pid` has exited and waits for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    return stat_line[stat_line.rfind(b")") + 2 : stat_line.rfind(b")") + 3] == b"Z"


def writable_files(pids: Iterable[int]) -> dict[str, tuple[int, bool]]:
    """Regular files open for writing by any of `pids`: path -> (size, opened with O_APPEND)."""
    found: dict[str, tuple[int, bool]] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            # A zombie has no files, and the kernel refuses its fd folder even to its owner.
            if is_zombie(pid):
                continue
            raise LauncherError(f"cannot list the open files of pid {pid}: {exc.strerror}") from exc
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
        for path in shared_writable_mappings(pid):
            if path not in found:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[path] = (st.st_size, False)
    return found


def shared_writable_mappings(pid: int) -> set[str]:
    """Files `pid` maps shared and writable (numpy memmaps, databases, SQLite's -shm):
    written through memory, they may be open by no descriptor at all."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.readlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return set()  # gone, or a zombie: nothing mapped
    paths = set()
    for line in lines:
        # "7f..-7f.. rw-s 00000000 08:01 1234   /data/state.dat"
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[1][1] == "w" and fields[1][3] == "s":
            path = fields[5].rstrip("\n")
            if path.startswith("/") and not path.endswith(" (deleted)"):
                paths.add(path)
    return paths


def roll_back(files: Iterable[OpenFile], images: Path) -> None:
    """Put every recorded file back to its state at dump time.

    Raises LauncherError, naming the file, when one cannot be put back exactly
    (no copy kept, and shorter than recorded or changed in place since): a
    restore then would give the job different data than it had.
    """
    files = list(files)
    for entry in files:  # every check first: a refused image leaves every file alone
        if entry.saved_copy is None:
            _check_unchanged(entry)
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
        current = os.stat(entry.path).st_size
        if current > entry.size:
            os.truncate(entry.path, entry.size)
            log.info("truncated %s from %d to %d bytes", entry.path, current, entry.size)


def _check_unchanged(entry: OpenFile) -> None:
    """The file holds, in its first `size` bytes, what it held at the checkpoint."""
    try:
        with open(entry.path, "rb", buffering=0) as f:
            current = os.fstat(f.fileno()).st_size
            if current < entry.size:
                raise LauncherError(
                    f"{entry.path} has {current} bytes, fewer than the {entry.size} at the "
                    "checkpoint, and the image keeps no copy"
                )
            if entry.content is None:
                raise LauncherError(
                    f"the image keeps neither a copy of {entry.path} nor its checksum"
                )
            same = hash_prefix(f.fileno(), entry.size) == entry.content
    except FileNotFoundError as exc:
        raise LauncherError(f"{entry.path} is gone and the image keeps no copy") from exc
    except OSError as exc:
        raise LauncherError(f"cannot read {entry.path} to check it: {exc}") from exc
    if not same:
        raise LauncherError(
            f"{entry.path} was changed in place after the checkpoint (its first "
            f"{entry.size} bytes differ) and the image keeps no copy: over "
            "launcher.copy_max_bytes"
        )
