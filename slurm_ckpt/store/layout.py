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
        final-request.json           the number reserved for the launcher's own final
                                     checkpoint (on Slurm's signal), written by the service
        images.json                  the service's list of valid images
        launcher.log, job-script

Nobody can create another user's job folder: the only writable level is the
user's own. Everything that names a file from outside (job ids, user names,
request files, image lists, manifests) goes through parse_job_id, check_user,
check_seq or inside(). The folders themselves are made, with their owners
checked, in folders.py.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from slurm_ckpt.errors import BadPath, StoreError

# Slurm job ids are 32-bit unsigned; six digits of sequence are ~19 years of
# checkpoints at the shortest interval.
MAX_JOB_ID = 2**32 - 1
MAX_SEQ = 999_999

_JOB_ID_RE = re.compile(r"[1-9][0-9]{0,9}")
# A login name as one path component: no '/', no leading '.' or '-'.
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
_SEQ_RE = re.compile(r"[0-9]{6}")

# The names inside a job's folder (the documents are in slurm_ckpt/exchange.py):
# JobDir builds paths from them, store.jobfs opens them one component at a time.
CHECKPOINTS = "checkpoints"
STAGING = "staging"
RESULTS = "results"
RESTARTS = "restarts"
REQUEST = "request.json"
FINAL_REQUEST = "final-request.json"
IMAGES = "images.json"
ENDED = "ended"  # the launcher's mark: the workload has ended, send no more requests
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
    disk except committed_seqs, which lists a folder."""

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
    def final_request_file(self) -> Path:
        return self.path / FINAL_REQUEST

    @property
    def ended_file(self) -> Path:
        return self.path / ENDED

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


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StoreError(f"cannot list {folder}: {err.strerror or err}") from err
