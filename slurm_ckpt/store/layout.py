"""Where things live in the image store.

    <root>/                          root-owned, 0755: users cannot write here
    <root>/<user>/                   0700, owned by the user; made by the trusted side
                                     (the service, or the site's account provisioning)
    <root>/<user>/<job_id>/          0700, owned by the job's user (made by the launcher)
        checkpoints/<seq:06d>/       committed images (see writer.py)
        staging/<seq:06d>.<random>/  dumps in progress or cut off by a crash
        results/<seq:06d>.json       the launcher's outcome for each request
        restarts/<restart:04d>.json  the launcher's report of each restart
        request.json                 the service's current request
        images.json                  the service's list of valid images
        launcher.log, job-script

Nobody can create another user's job folder: the only writable level is the
user's own. Everything that names a file from outside (job ids, user names,
request files, image lists, manifests) goes through parse_job_id, check_user,
check_seq or inside().
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from slurm_ckpt.errors import BadPath, MissingUserDir, StoreError, UnsafeJobDir

# Slurm job ids are 32-bit unsigned; six digits of sequence are ~19 years of
# checkpoints at the shortest interval.
MAX_JOB_ID = 2**32 - 1
MAX_SEQ = 999_999

_JOB_ID_RE = re.compile(r"[1-9][0-9]{0,9}")
# A login name as one path component: no '/', no leading '.' or '-'.
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
_SEQ_RE = re.compile(r"[0-9]{6}")
_RESULT_RE = re.compile(r"([0-9]{6})\.json")
_STAGING_RE = re.compile(r"([0-9]{6})\..+")

# The names inside a job's folder (the documents are in slurm_ckpt/exchange.py):
# JobDir builds paths from them, store.jobfs opens them one component at a time.
CHECKPOINTS = "checkpoints"
STAGING = "staging"
RESULTS = "results"
RESTARTS = "restarts"
REQUEST = "request.json"
IMAGES = "images.json"
SUBDIRS = (CHECKPOINTS, STAGING, RESULTS)


def seq_name(seq: int) -> str:
    """A checkpoint's folder name. Raises BadPath for an invalid seq."""
    return f"{check_seq(seq):06d}"


def result_name(seq: int) -> str:
    return f"{seq_name(seq)}.json"


def restart_name(restart: int) -> str:
    if isinstance(restart, bool) or not isinstance(restart, int) or restart < 1:
        raise BadPath(f"not a restart count: {restart!r}", value=repr(restart))
    return f"{restart:04d}.json"


def parse_job_id(text: str) -> int:
    """Return the job id written in `text` (positive decimal, no sign or spaces).

    Raises BadPath otherwise.
    """
    if not isinstance(text, str) or not _JOB_ID_RE.fullmatch(text) or int(text) > MAX_JOB_ID:
        raise BadPath(f"not a Slurm job id: {text!r}", value=repr(text))
    return int(text)


def check_user(name: str) -> str:
    """Return `name` if it can be a user's folder name in the store.

    Raises BadPath otherwise.
    """
    if not isinstance(name, str) or not _USER_RE.fullmatch(name):
        raise BadPath(f"not a user name the store can hold: {name!r:.80}", value=repr(name))
    return name


def check_seq(seq: int) -> int:
    """Return `seq` if it is a valid checkpoint sequence number (1..999999).

    Raises BadPath otherwise.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise BadPath(f"not a checkpoint sequence number (1..{MAX_SEQ}): {seq!r}", value=repr(seq))
    return seq


@dataclass(frozen=True)
class JobDir:
    """The store folder of one job of `user`. Pure naming: nothing here touches the
    disk except committed_seqs and next_seq, which list folders."""

    root: Path
    user: str
    job_id: int

    def __post_init__(self) -> None:
        check_user(self.user)
        job_id = self.job_id
        if isinstance(job_id, bool) or not isinstance(job_id, int) or not 1 <= job_id <= MAX_JOB_ID:
            raise BadPath(f"not a Slurm job id: {job_id!r}", value=repr(job_id))

    @property
    def user_dir(self) -> Path:
        return self.root / self.user

    @property
    def path(self) -> Path:
        return self.user_dir / str(self.job_id)

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoint(self, seq: int) -> Path:
        return self.checkpoints_dir / seq_name(seq)

    @property
    def staging_dir(self) -> Path:
        return self.path / STAGING

    @property
    def request_file(self) -> Path:
        return self.path / REQUEST

    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    def result_file(self, seq: int) -> Path:
        return self.results_dir / result_name(seq)

    @property
    def restarts_dir(self) -> Path:
        return self.path / RESTARTS

    def restart_report(self, restart: int) -> Path:
        return self.restarts_dir / restart_name(restart)

    @property
    def images_list(self) -> Path:
        return self.path / IMAGES

    @property
    def log_file(self) -> Path:
        return self.path / "launcher.log"

    @property
    def script_copy(self) -> Path:
        return self.path / "job-script"

    def committed_seqs(self) -> list[int]:
        """Sequence numbers of the folders in checkpoints/, ascending.

        Committed is not valid: verify before use. Anything not named like a
        sequence number, and anything that is not a real folder, is ignored.
        """
        seqs = []
        for entry in _scan(self.checkpoints_dir):
            if (
                _SEQ_RE.fullmatch(entry.name)
                and entry.is_dir(follow_symlinks=False)
                and int(entry.name) >= 1
            ):
                seqs.append(int(entry.name))
        return sorted(seqs)

    def next_seq(self) -> int:
        """1 + the highest sequence number used in checkpoints/, results/ or staging/.

        Counts every name that looks like a sequence number, whatever it is, so
        a new dump never collides with a leftover.
        """
        highest = 0
        patterns = (
            (self.checkpoints_dir, _SEQ_RE),
            (self.results_dir, _RESULT_RE),
            (self.staging_dir, _STAGING_RE),
        )
        for folder, pattern in patterns:
            for entry in _scan(folder):
                match = pattern.fullmatch(entry.name)
                if match:
                    highest = max(highest, int(match.group(match.lastindex or 0)))
        return highest + 1


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


def inside(base: Path, name: str) -> Path:
    """Return the resolved path of `name` under `base`, for names written by others.

    Rejects (BadPath) empty names, NUL bytes, absolute paths, '..' components and
    anything that resolves (through symlinks) outside `base` or to `base` itself.
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise BadPath(f"not an acceptable file name: {name!r}", value=repr(name))
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise BadPath(f"file name must stay inside {base}: {name!r}", value=name)
    real_base = base.resolve()
    resolved = (real_base / relative).resolve()
    if resolved == real_base or not resolved.is_relative_to(real_base):
        raise BadPath(f"file name must stay inside {base}: {name!r}", value=name)
    return resolved


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


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StoreError(f"cannot list {folder}: {err.strerror or err}") from err
