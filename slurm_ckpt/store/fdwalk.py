"""Bounded operations on a folder reached by descriptor, never following a link:
list it, remove a tree in it, ask whether a name is there.

Used by jobfs inside a job's folder, where every entry is the job's user's to
shape: each folder is opened O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK, and
listings, depth and removals are capped (Untrusted past a cap).
"""

from __future__ import annotations

import contextlib
import errno
import os

from slurm_ckpt.store import untrusted

MAX_LISTED = 100_000  # entries looked at in one folder
MAX_REMOVED = 1_000_000  # entries one removal may take out (an image has a few dozen)
MAX_DEPTH = 64  # folder depth one removal follows (images are flat)
_WALK_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def list_entries(dir_fd: int) -> list[os.DirEntry[str]]:
    """The folder's entries sorted by name; Untrusted past MAX_LISTED of them."""
    entries = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            entries.append(entry)
            if len(entries) > MAX_LISTED:
                raise untrusted.Untrusted(f"more than {MAX_LISTED} entries in one folder")
    return sorted(entries, key=lambda e: e.name)


def remove(dir_fd: int, name: str) -> None:
    """Remove `name` in `dir_fd`, a folder tree or anything else, never following a
    link and never blocking: every folder is opened O_DIRECTORY | O_NOFOLLOW |
    O_NONBLOCK (a FIFO swapped in for a folder is refused, not waited on). An
    explicit stack, not recursion, with caps on depth and entries: a user's tree
    of any shape costs a bounded amount and raises Untrusted past it."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return
    except FileNotFoundError:
        return
    except IsADirectoryError:
        pass
    # (folder fd, name of the folder in it, its own fd) from the top down.
    stack: list[tuple[int, str, int]] = []
    seen = 0
    try:
        stack.append((dir_fd, name, _open_subdir(dir_fd, name)))
        while stack:
            parent, folder_name, fd = stack[-1]
            child = _next_entry(fd)
            if child is None:  # empty now: remove it, go back up
                stack.pop()
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(folder_name, dir_fd=parent)
                continue
            seen += 1
            if seen > MAX_REMOVED:
                raise untrusted.Untrusted(f"more than {MAX_REMOVED} entries to remove")
            try:
                os.unlink(child, dir_fd=fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                if len(stack) >= MAX_DEPTH:
                    raise untrusted.Untrusted(f"folders nested deeper than {MAX_DEPTH}") from None
                stack.append((fd, child, _open_subdir(fd, child)))
    finally:
        for _, _, fd in stack:
            os.close(fd)


def _open_subdir(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, _WALK_FLAGS, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise untrusted.Untrusted(f"{name[:80]} changed while being removed") from err
        raise


def _next_entry(dir_fd: int) -> str | None:
    """One name in the folder, or None when it is empty (listing from the start each
    time: the folder shrinks as we go)."""
    with os.scandir(dir_fd) as it:
        for entry in it:
            return entry.name
    return None


def lexists(dir_fd: int, name: str) -> bool:
    """True when `name` is in the folder (a symlink counts, and is not followed)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
