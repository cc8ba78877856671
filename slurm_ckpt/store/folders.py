"""Making the store's folders, each checked before it is used: a real folder (no
symlink followed), owned by the right uid, closed to group and others.

`ensure_user_dir` is the service's (root) making `<root>/<user>/`;
`ensure_job_dir` the launcher's (the job's user) making the job's folder and
its subfolders; `open_root` the first step of every walk into the store. The
names are layout.py's.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from slurm_ckpt.errors import MissingUserDir, StoreError, UnsafeJobDir
from slurm_ckpt.store.layout import SUBDIRS, JobDir, check_user


def ensure_job_dir(root: Path, user: str, job_id: int) -> JobDir:
    """Create (or accept) the job's folder and subfolders, private to the current user.

    Run by the launcher as the job's user, inside the user's own folder, which
    must exist (MissingUserDir otherwise: the trusted side makes it). Refuses
    (UnsafeJobDir) a user folder or job folder that is a symlink, not a folder,
    owned by another uid, or open to group or others; refuses (StoreError) a
    root that does not exist.
    """
    job = JobDir(root, user, job_id)
    root_fd = open_root(root, hint=" (an admin creates it)")
    try:
        user_fd = _existing_private_dir(root_fd, user, job.user_dir, os.geteuid(), writable=0o022)
        try:
            job_fd = _private_dir(user_fd, str(job_id), job.path)
            try:
                for name in SUBDIRS:
                    os.close(_private_dir(job_fd, name, job.path / name))
            finally:
                os.close(job_fd)
        finally:
            os.close(user_fd)
    finally:
        os.close(root_fd)
    return job


def ensure_user_dir(root: Path, user: str, uid: int, gid: int) -> Path:
    """Create (or accept) `<root>/<user>/`, owned by `uid`:`gid`, mode 0700.

    Run by the service as root, the owner of the store root, when it starts
    tracking a user's job. Refuses (UnsafeJobDir) an existing entry that is a
    symlink, not a folder, owned by another uid, or writable by group or
    others; StoreError when it cannot be created (a root-squashed store: the
    site's account provisioning makes these folders there).
    """
    path = root / check_user(user)
    root_fd = open_root(root)
    try:
        try:
            os.mkdir(user, 0o700, dir_fd=root_fd)
        except FileExistsError:
            pass
        except OSError as err:
            raise StoreError(
                f"cannot create {path}: {err.strerror or err}; "
                f"create it: install -d -o {uid} -g {gid} -m 0700 {path}"
            ) from err
        else:
            fd = os.open(user, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
            try:
                # Mode first: once it is the user's, root (without CAP_FOWNER, as on
                # a root-squashed store) may no longer change it.
                os.fchmod(fd, 0o700)
                os.fchown(fd, uid, gid)
            finally:
                os.close(fd)
        os.close(_existing_private_dir(root_fd, user, path, uid, writable=0o022))
    finally:
        os.close(root_fd)
    return path


def open_root(root: Path, *, problem: str = "is not usable", hint: str = "") -> int:
    """An O_PATH descriptor on the store root: the root is the service's, and users
    (or root, on a root-squashed store) only pass through it. StoreError otherwise,
    saying "store root <root> <problem>: <reason><hint>"."""
    try:
        return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise StoreError(f"store root {root} {problem}: {err.strerror or err}{hint}") from err


def _existing_private_dir(parent_fd: int, name: str, shown: Path, uid: int, writable: int) -> int:
    """An fd on the existing folder `name`, once it is a real folder owned by `uid`
    and not writable by group or others (MissingUserDir when it is not there)."""
    try:
        # O_PATH: checking the owner needs no right to read the folder (the service
        # checks a user's 0700 folder), and the fd still serves as a dir_fd.
        fd = _open_folder(parent_fd, name, shown, os.O_PATH)
    except FileNotFoundError as err:
        raise MissingUserDir(
            f"{shown} does not exist: slurm-ckptd creates it when it tracks the user's "
            "first job (or the site's account provisioning does)",
            path=str(shown),
        ) from err
    return _checked(fd, shown, uid, writable, "writable by group or others")


def _open_folder(parent_fd: int, name: str, shown: Path, access: int) -> int:
    """Open folder `name` without following a link; FileNotFoundError when missing,
    UnsafeJobDir for a symlink or non-folder, StoreError otherwise."""
    try:
        return os.open(
            name, access | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
        )
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeJobDir(
                f"{shown} is a symlink or not a folder: refusing it", path=str(shown)
            ) from err
        raise StoreError(f"cannot open {shown}: {err.strerror or err}") from err


def _private_dir(parent_fd: int, name: str, shown: Path) -> int:
    """Create `name` 0700 under parent_fd if missing; return an fd on it once checked."""
    created = True
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        created = False
    except OSError as err:
        raise StoreError(f"cannot create {shown}: {err.strerror or err}") from err
    try:
        fd = _open_folder(parent_fd, name, shown, os.O_RDONLY)
    except FileNotFoundError as err:  # removed between mkdir and open
        raise StoreError(f"cannot open {shown}: {err.strerror or err}") from err
    if created:
        try:
            os.fchmod(fd, 0o700)  # the umask may have taken bits away
        except BaseException:
            os.close(fd)
            raise
    return _checked(fd, shown, os.geteuid(), 0o077, "open to group or others")


def _checked(fd: int, shown: Path, uid: int, forbidden: int, why: str) -> int:
    """`fd` once its folder is owned by `uid` and has none of the `forbidden` mode
    bits; closed and UnsafeJobDir otherwise."""
    try:
        st = os.fstat(fd)
        if st.st_uid != uid:
            raise UnsafeJobDir(
                f"{shown} is owned by uid {st.st_uid}, not by uid {uid}: refusing it",
                path=str(shown),
            )
        if stat.S_IMODE(st.st_mode) & forbidden:
            raise UnsafeJobDir(
                f"{shown} has mode {stat.S_IMODE(st.st_mode):04o}, {why}: refusing it (chmod 700)",
                path=str(shown),
            )
    except BaseException:
        os.close(fd)
        raise
    return fd
