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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Writable:
    """A regular file the tree can write, as seen while it is frozen."""

    size: int
    append: bool  # some descriptor has O_APPEND (CRIU then records no size)
    # Some descriptor may write anywhere (no O_APPEND), or a shared writable
    # mapping does: what was there may change, not only what follows.
    in_place: bool
    # The tree holds a lease on it: any open of ours would break the lease (and
    # wait for the frozen holder), so it is known by its stamp only.
    leased: bool = False
    stamp: str = ""


def stamp(st: os.stat_result) -> str:
    """What changes whenever a file is written: its inode, size, mtime and ctime
    (ctime no user can set). Not the device: it differs between an NFS client's mounts."""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


_LEASE_KINDS = frozenset(("LEASE", "DELEG"))


def leased_inodes(locks: Path = Path("/proc/locks")) -> set[tuple[int, int, int]]:
    """(major, minor, inode) of every file someone holds a lease on."""
    try:
        lines = locks.read_text().splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] not in _LEASE_KINDS:
            continue  # another kind of lock, or a "->" waiter
        for field in fields[2:]:
            parts = field.split(":")
            if len(parts) == 3:
                try:
                    found.add((int(parts[0], 16), int(parts[1], 16), int(parts[2])))
                except ValueError:
                    continue
                break
    return found


def writable_files(pids: Iterable[int]) -> dict[str, Writable]:
    """Regular files open for writing, or mapped shared and writable, by any of `pids`."""
    found: dict[str, Writable] = {}
    leases = leased_inodes()

    def add(path: str, st: os.stat_result, append: bool, in_place: bool) -> None:
        if st.st_nlink == 0:
            return  # deleted: CRIU saves such a file's content itself (a ghost file)
        if path.endswith(_DELETED):
            # Unlinked under this name but linked under another: the path no longer
            # names it, so it can neither be saved nor put back by path.
            raise LauncherError(
                f"{path.removesuffix(_DELETED)} was renamed or unlinked while open and "
                "still has another name: it cannot be saved"
            )
        previous = found.get(path)
        if previous is not None:
            append, in_place = append or previous.append, in_place or previous.in_place
        leased = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in leases
        found[path] = Writable(st.st_size, append, in_place, leased, stamp(st))

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
                if not target.startswith("/"):
                    continue  # pipes, sockets, anonymous inodes
                flags = _fd_flags(pid, fd)
                if flags & os.O_ACCMODE not in (os.O_WRONLY, os.O_RDWR):
                    continue
                st = os.stat(link)
            except (FileNotFoundError, ProcessLookupError):
                continue
            if stat.S_ISREG(st.st_mode):
                append = bool(flags & os.O_APPEND)
                add(target, st, append, in_place=not append)
        for path, st in shared_writable_mappings(pid).items():
            if stat.S_ISREG(st.st_mode):
                add(path, st, append=False, in_place=True)
    return found


_DELETED = " (deleted)"


def shared_writable_mappings(pid: int) -> dict[str, os.stat_result]:
    """Files `pid` maps shared and writable (numpy memmaps, databases, SQLite's -shm),
    with what they are: written through memory, they may be open by no descriptor."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}  # gone
    except PermissionError as exc:
        if is_zombie(pid):
            return {}  # nothing mapped
        raise LauncherError(f"cannot read the mappings of pid {pid}: {exc.strerror}") from exc
    found: dict[str, os.stat_result] = {}
    for line in lines:
        # "7f00-7f80 rw-s 00000000 08:01 1234   /data/state.dat"
        fields = line.split(maxsplit=5)
        if len(fields) != 6 or fields[1][1:2] != b"w" or fields[1][3:4] != b"s":
            continue
        # The kernel escapes a newline in the path as \012.
        path = os.fsdecode(fields[5].replace(b"\\012", b"\n"))
        if not path.startswith("/") or path.endswith(_DELETED):
            continue  # anonymous shared memory, memfd, SysV; deleted: CRIU's ghost files
        try:
            # By path, as CRIU reopens it (map_files/ would name the mapped file
            # itself, but needs a capability; its inode number differs on overlayfs).
            found[path] = os.stat(path)
        except FileNotFoundError:
            continue  # renamed away: CRIU's restore of the mapping fails by itself
    return found


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
            _rewrite(entry, images / entry.saved_copy)
            log.info("rolled back %s from its copy (%d bytes)", entry.path, entry.size)
            continue
        current = os.stat(entry.path).st_size
        if current > entry.size:
            os.truncate(entry.path, entry.size)
            log.info("truncated %s from %d to %d bytes", entry.path, current, entry.size)


def write_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    """pwrite every byte (a full disk or a quota may write part, then raise)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _rewrite(entry: OpenFile, copy: Path) -> None:
    """Make the file equal to its copy, writing only the chunks that differ: one the
    job did not touch since the checkpoint keeps its mtime (programs check it)."""
    # In place, not by rename: other processes (slurmstepd) may hold the file open.
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    with open(copy, "rb", buffering=0) as src:
        fd = os.open(entry.path, flags, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise LauncherError(f"{entry.path} is no longer a regular file")
            offset = 0
            while chunk := src.read(_COPY_CHUNK):
                if os.pread(fd, len(chunk), offset) != chunk:
                    write_all(fd, chunk, offset)
                offset += len(chunk)
            if offset != entry.size:
                raise LauncherError(
                    f"the copy of {entry.path} holds {offset} bytes, not {entry.size}"
                )
            if os.fstat(fd).st_size != entry.size:
                os.ftruncate(fd, entry.size)
        finally:
            os.close(fd)


def _check_unchanged(entry: OpenFile) -> None:
    """The file holds, in bytes [content_from, size), what it held at the checkpoint."""
    try:
        # Non-blocking: a FIFO planted at the path must not hang the restart.
        fd = os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise LauncherError(f"{entry.path} is gone and the image keeps no copy") from exc
    except OSError as exc:
        raise LauncherError(f"cannot open {entry.path} to check it: {exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LauncherError(f"{entry.path} is no longer a regular file")
        if st.st_size < entry.size:
            raise LauncherError(
                f"{entry.path} has {st.st_size} bytes, fewer than the {entry.size} at the "
                "checkpoint, and the image keeps no copy"
            )
        if entry.stamp is not None:
            same = stamp(st) == entry.stamp
        elif entry.content is None:
            raise LauncherError(f"the image keeps neither a copy of {entry.path} nor its checksum")
        else:
            same = hash_prefix(fd, entry.size, entry.content_from) == entry.content
    except OSError as exc:
        raise LauncherError(f"cannot read {entry.path} to check it: {exc}") from exc
    finally:
        os.close(fd)
    if not same and entry.stamp is not None:
        raise LauncherError(
            f"{entry.path} was written after the checkpoint, and the image keeps no copy: "
            "the job held a lease on it, which reading it would have broken"
        )
    if not same:
        raise LauncherError(
            f"{entry.path} was changed in place after the checkpoint (bytes "
            f"{entry.content_from} to {entry.size} differ) and the image keeps no copy: "
            "over launcher.copy_max_bytes"
        )
