"""Run a function with a job owner's filesystem identity, in a thread of its own.

The service runs as root, but everything it does in a job's folder must be
done with the rights of the job's owner: a symlink, FIFO or swapped folder
planted there then reaches only what that user could reach anyway, and a
root-squashed shared filesystem (NFS, Lustre), on which root has no rights in
users' 0700 folders, serves the request as it would serve the user.

Linux keeps the filesystem uid and gid (setfsuid/setfsgid) and the
supplementary groups per thread: a fresh thread takes the owner's fsuid,
fsgid and groups, does the one operation and ends. The kernel drops the
DAC-overriding capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
CAP_FOWNER, ...) from a thread whose fsuid is not 0, so the kernel's
permission checks are exactly the owner's. The rest of the process (catalog
connections, logs, other jobs) never changes identity. glibc's setgroups()
changes every thread of the process, so the raw system call is used.

The caller waits at most `timeout` seconds: an operation stuck in the
filesystem (a hung mount, a FUSE file system that never answers) is left to
its thread and the caller gets StoreTimeout; the job is then quarantined by
the caller (jobfs.py) so one stuck folder holds at most one thread.
"""

from __future__ import annotations

import ctypes
import os
import platform
import pwd
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from slurm_ckpt.errors import StoreError

T = TypeVar("T")

# setgroups(2) numbers of the architectures this runs on (asm/unistd.h).
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159, "ppc64le": 81, "s390x": 206}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setfsuid.argtypes = [ctypes.c_uint]
_libc.setfsgid.argtypes = [ctypes.c_uint]
_libc.syscall.restype = ctypes.c_long

_NO_ID = 0xFFFFFFFF  # (uid_t)-1: setfs[ug]id changes nothing and returns the current id
_GROUPS_CACHE_SECONDS = 60.0


class StoreTimeout(StoreError):
    """An operation in a job's folder did not finish in time."""


class IdentityError(StoreError):
    """The owner's identity could not be taken (no CAP_SETUID, unknown architecture)."""


@dataclass(frozen=True)
class Owner:
    """The identity file operations in a job's folder run with."""

    uid: int
    gid: int
    groups: tuple[int, ...]


_cache: dict[int, tuple[float, Owner]] = {}
_cache_lock = threading.Lock()


def owner_of(uid: int, gid: int | None = None) -> Owner:
    """The job owner's identity: primary group and supplementary groups from the
    user database (cached for a minute). A uid without a passwd entry gets only
    `gid` (or its uid as gid) and no supplementary groups."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(uid)
        if (
            hit is not None
            and now - hit[0] < _GROUPS_CACHE_SECONDS
            and (gid is None or hit[1].gid == gid)
        ):
            return hit[1]
    try:
        entry = pwd.getpwuid(uid)
        primary = entry.pw_gid if gid is None else gid
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, primary))))
    except KeyError:
        primary = uid if gid is None else gid
        groups = (primary,)
    owner = Owner(uid=uid, gid=primary, groups=groups)
    with _cache_lock:
        _cache[uid] = (now, owner)
    return owner


def run_as(owner: Owner, fn: Callable[[], T], *, timeout: float, what: str) -> T:
    """Run `fn()` in a new thread with `owner`'s filesystem identity; return its value.

    When this process is not root, `fn` runs with the process's own identity
    (a user's own ckpt-admin; unit tests). Raises what `fn` raises,
    StoreTimeout after `timeout` seconds, IdentityError when the identity
    cannot be taken.
    """
    box: dict[str, object] = {}
    done = threading.Event()

    def body() -> None:
        try:
            if os.geteuid() == 0:
                _take(owner)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=body, name=f"as-uid-{owner.uid}", daemon=True)
    thread.start()
    if not done.wait(timeout):
        raise StoreTimeout(f"{what}: no answer from the store within {timeout:g}s")
    if "error" in box:
        error = box["error"]
        assert isinstance(error, BaseException)
        raise error
    return box["value"]  # type: ignore[return-value]


def _take(owner: Owner) -> None:
    """Give the calling thread (and only it) the owner's fs identity, and check it."""
    number = _SYS_SETGROUPS.get(platform.machine())
    if number is None:
        raise IdentityError(f"setgroups number unknown on {platform.machine()}")
    groups = (ctypes.c_uint * max(len(owner.groups), 1))(*owner.groups)
    if _libc.syscall(number, len(owner.groups), groups) != 0:
        err = ctypes.get_errno()
        raise IdentityError(f"setgroups for uid {owner.uid} failed: {os.strerror(err)}")
    _libc.setfsgid(owner.gid)
    _libc.setfsuid(owner.uid)
    # setfs[ug]id report no errors: ask again with an id that changes nothing.
    if _libc.setfsgid(_NO_ID) != owner.gid or _libc.setfsuid(_NO_ID) != owner.uid:
        raise IdentityError(f"cannot take the filesystem identity of uid {owner.uid}")
