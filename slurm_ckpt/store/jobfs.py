"""Every file operation the service and ckpt-admin perform inside a job's folder.

No other code of the service or of ckpt-admin opens a path below the store
root. Each operation:

- runs with the job owner's filesystem identity (identity.run_as), so the
  kernel, or a root-squashing file server, grants exactly what the owner has;
- walks from the store root one component at a time with O_NOFOLLOW, and
  checks that the job's folder and every folder and file it reads belong to
  the job's uid (a folder another user made, or a symlink, is refused);
- reads through untrusted.py: non-blocking opens, regular files only, caps;
- is bounded in time: the caller waits `timeout` seconds at most. A job whose
  operation got stuck is quarantined: its next operations fail at once until
  the stuck one returns, so one hostile folder holds at most one thread.

Paths are built from JobDir (the layout) and never from anything read. The
descriptor-level listing and removal below a job's folder are in fdwalk.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from slurm_ckpt.errors import ImageCorrupt, StoreError
from slurm_ckpt.exchange import MAX_MESSAGE_BYTES
from slurm_ckpt.store import fdwalk, layout, untrusted
from slurm_ckpt.store.atomic import write_atomic_at
from slurm_ckpt.store.folders import ensure_user_dir, open_root
from slurm_ckpt.store.identity import StoreTimeout, owner_of, run_as
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import Manifest
from slurm_ckpt.store.verify import verify_checkpoint_fd

T = TypeVar("T")

DATA_TIMEOUT = 3600.0  # seconds for re-hashing a whole image (ckpt-admin verify --read-data)


@functools.cache
def shared_job_files(store_root: Path, timeout: timedelta) -> JobFiles:
    """The one JobFiles of a store in this process (the service's tasks and its API
    alike), so the quarantine of a stuck job folder holds for every caller.
    `timeout`: service.store_timeout."""
    return JobFiles(store_root, timeout=timeout.total_seconds())


class _Missing:
    """The job's folder does not exist (an operation's own None is a value)."""


_MISSING = _Missing()


@dataclass(frozen=True)
class JobRef:
    """Which folder, and whose: the job's user name and uid and its id, all from Slurm."""

    user: str
    slurm_job_id: int
    uid: int


class JobFiles:
    """The job folders of one image store, reached as each job's owner."""

    def __init__(self, store_root: Path, *, timeout: float = 30.0) -> None:
        self.store_root = store_root
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stuck: dict[int, threading.Event] = {}  # slurm job id -> set when it returns
        self._prepared: dict[str, int] = {}  # user folders known to exist: name -> uid

    def jobdir(self, job: JobRef) -> JobDir:
        return JobDir(self.store_root, job.user, job.slurm_job_id)

    def prepare_user(self, user: str, uid: int) -> None:
        """Make sure `<store>/<user>/` exists for the user (once per process and user):
        the one level of the store a user may write, made by the trusted side.
        Raises StoreError (with the command that fixes it) when it cannot be made."""
        with self._lock:
            if self._prepared.get(user) == uid:
                return
        owner = owner_of(uid)
        ensure_user_dir(self.store_root, user, uid, owner.gid)
        with self._lock:
            self._prepared[user] = uid

    # -- operations ----------------------------------------------------------------

    def exists(self, job: JobRef) -> bool:
        """True when the job's folder exists and is the owner's own folder."""

        def op(folder: _Folder) -> bool:
            return True

        return self._run(job, "look at the job's folder", op, missing=False)

    def write_request(self, job: JobRef, data: bytes) -> bool:
        """Replace request.json (the launcher reads it on SIGUSR1); False, with the
        request taken back, when the launcher has marked its workload ended: then no
        signal may follow. StoreError when the folder is missing or not the owner's."""

        def op(folder: _Folder) -> bool:
            write_atomic_at(folder.fd, layout.REQUEST, data)
            # After the write: a launcher that marks the end after this look finds
            # the request, and waits for its signal (launcher/session.py, end).
            if not _lexists(folder.fd, layout.ENDED):
                return True
            os.unlink(layout.REQUEST, dir_fd=folder.fd)
            return False

        return self._run(job, f"write {layout.REQUEST}", op)

    def write_final_request(self, job: JobRef, data: bytes) -> None:
        """Replace final-request.json (the number the launcher's own final checkpoint takes).
        StoreError when the folder is missing or not the owner's."""
        self._run(
            job,
            f"write {layout.FINAL_REQUEST}",
            lambda f: write_atomic_at(f.fd, layout.FINAL_REQUEST, data),
        )

    def publish(self, job: JobRef, data: bytes) -> None:
        """Replace images.json, the list of valid images the launcher restores from."""
        self._run(
            job, f"write {layout.IMAGES}", lambda f: write_atomic_at(f.fd, layout.IMAGES, data)
        )

    def read_result(self, job: JobRef, seq: int) -> Any:
        """The parsed results/<seq>.json; None while there is none.
        Raises untrusted.Untrusted for a file that is not an acceptable result."""
        name = layout.result_name(seq)
        return self._run(
            job, f"read result {seq}", lambda f: f.read_json(layout.RESULTS, name), missing=None
        )

    def read_restart_report(self, job: JobRef, restart: int) -> Any:
        """The parsed restarts/<restart>.json; None while there is none."""
        name = layout.restart_name(restart)
        return self._run(
            job,
            f"read restart report {restart}",
            lambda f: f.read_json(layout.RESTARTS, name),
            missing=None,
        )

    def verify(
        self,
        job: JobRef,
        seq: int,
        *,
        read_data: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Manifest, bytes]:
        """Verify checkpoint `seq` (structure; every byte with read_data) and return
        its manifest with the manifest's bytes as read (hash those, never the
        path again). Raises ImageCorrupt, StoreError."""
        name = layout.seq_name(seq)
        where = str(self.jobdir(job).checkpoint(seq))

        def op(folder: _Folder) -> tuple[Manifest, bytes]:
            with folder.sub(layout.CHECKPOINTS, required=True) as checkpoints:
                fd = untrusted.open_dir(checkpoints, name, owner=job.uid)
                if fd is None:
                    raise ImageCorrupt(where, "folder: missing")
                try:
                    return verify_checkpoint_fd(
                        fd, where, read_data=read_data, progress=progress, owner=job.uid
                    )
                finally:
                    os.close(fd)

        # Re-hashing a large image takes longer than any metadata operation.
        limit = max(self.timeout, DATA_TIMEOUT) if read_data else None
        return self._run(job, f"verify checkpoint {seq}", op, timeout=limit)

    def delete_checkpoint(self, job: JobRef, seq: int) -> bool:
        """Remove checkpoints/<seq>/ for good; True when it is gone (or never was)."""
        name = layout.seq_name(seq)

        def op(checkpoints: int) -> bool:
            fdwalk.remove(checkpoints, name)
            os.fsync(checkpoints)
            return not fdwalk.lexists(checkpoints, name)

        return self._run_in(job, layout.CHECKPOINTS, f"delete checkpoint {seq}", op, missing=True)

    def clean_staging(self, job: JobRef) -> list[str]:
        """Remove everything in staging/ (call only while no dump runs); the names removed."""

        def op(staging: int) -> list[str]:
            removed = [e.name for e in fdwalk.list_entries(staging)]
            for name in removed:
                fdwalk.remove(staging, name)
            if removed:
                os.fsync(staging)
            return removed

        return self._run_in(job, layout.STAGING, "clean staging", op, missing=[])

    # -- machinery -------------------------------------------------------------------

    def _run_in(self, job: JobRef, sub: str, what: str, op: Callable[[int], T], *, missing: T) -> T:
        """`op` on the descriptor of the job's subfolder `sub`, as `_run` runs it;
        `missing` when the job's folder or the subfolder does not exist."""

        def in_sub(folder: _Folder) -> T:
            with folder.sub(sub) as fd:
                return missing if fd is None else op(fd)

        return self._run(job, what, in_sub, missing=missing)

    def _run(
        self,
        job: JobRef,
        what: str,
        op: Callable[[_Folder], T],
        *,
        missing: T | _Missing = _MISSING,
        timeout: float | None = None,
    ) -> T:
        """Run `op` on the job's folder as its owner. A missing folder gives
        `missing` when one is given, else StoreError."""
        what = f"job {job.slurm_job_id}: {what}"
        with self._lock:
            stuck = self._stuck.get(job.slurm_job_id)
            if stuck is not None:
                if not stuck.is_set():
                    raise StoreTimeout(f"{what}: an earlier operation in its folder is still stuck")
                del self._stuck[job.slurm_job_id]
        finished = threading.Event()
        root = self.store_root
        where = self.jobdir(job).path

        def body() -> T | _Missing:
            try:
                with _Folder.open(root, job, where) as folder:
                    return _MISSING if folder is None else op(folder)
            finally:
                finished.set()

        try:
            value = run_as(owner_of(job.uid), body, timeout=timeout or self.timeout, what=what)
        except StoreTimeout:
            with self._lock:
                self._stuck[job.slurm_job_id] = finished
            raise
        if isinstance(value, _Missing):
            if not isinstance(missing, _Missing):
                return missing
            raise StoreError(
                f"{what}: {where} does not exist (the job does not run under the launcher)"
            )
        return value


def _lexists(dir_fd: int, name: str) -> bool:
    """Whether `name` is in the folder, whatever it is (nothing is opened or followed)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


@dataclass
class _Folder:
    """An open job folder (owner checked), inside an identity thread."""

    fd: int
    uid: int

    @classmethod
    @contextlib.contextmanager
    def open(cls, root: Path, job: JobRef, where: Path) -> Iterator[_Folder | None]:
        """The job's folder, reached root -> user -> job, each step the owner's own."""
        root_fd = open_root(root, problem=f"is not reachable as uid {job.uid}")
        try:
            user_fd = untrusted.open_dir(root_fd, job.user, owner=job.uid)
        finally:
            os.close(root_fd)
        if user_fd is None:
            yield None
            return
        try:
            fd = untrusted.open_dir(user_fd, str(job.slurm_job_id), owner=job.uid)
        finally:
            os.close(user_fd)
        if fd is None:
            yield None
            return
        try:
            yield cls(fd, job.uid)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def sub(self, name: str, *, required: bool = False) -> Iterator[int | None]:
        """A subfolder's descriptor (the owner's, no symlink), or None when missing."""
        fd = untrusted.open_dir(self.fd, name, owner=self.uid)
        if fd is None and required:
            raise StoreError(f"{name}/ is missing from the job's folder")
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def read_json(self, folder: str, name: str) -> Any:
        with self.sub(folder) as fd:
            if fd is None:
                return None
            data = untrusted.read_file(fd, name, MAX_MESSAGE_BYTES, owner=self.uid)
        return None if data is None else untrusted.loads(data, f"{folder}/{name}")
