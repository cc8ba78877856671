"""Durable file writes: temp file in the same folder, fsync, rename, fsync the folder.

A reader sees either the old content or the new one, never a mix, and after
write_atomic returns the new content survives a crash of the node.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from slurm_ckpt.errors import StoreError

# The parent folder is opened without following a symlink.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably.

    Refuses a parent folder that is a symlink.
    Raises StoreError when any step fails; no temp file is left behind.
    """
    try:
        dir_fd = os.open(path.parent, _DIR_FLAGS)
    except OSError as err:
        raise StoreError(f"cannot open folder {path.parent}: {_reason(err)}") from err
    try:
        write_atomic_at(dir_fd, path.name, data, mode, shown=str(path))
    finally:
        os.close(dir_fd)


def write_atomic_at(
    dir_fd: int, name: str, data: bytes, mode: int = 0o600, *, shown: str | None = None
) -> None:
    """write_atomic for `name` in an open folder (the service's job-folder writes)."""
    shown = shown or name
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
    except OSError as err:
        raise StoreError(f"cannot create a temp file for {shown}: {_reason(err)}") from err
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise StoreError(f"cannot write {shown}: {_reason(err)}") from err


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (created, renamed, removed names) durable.

    Raises StoreError when the folder cannot be opened or synced.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise StoreError(f"cannot sync folder {path}: {_reason(err)}") from err


def _reason(err: OSError) -> str:
    return err.strerror or str(err)
