"""The images of one job, from the service's side: what the launcher answered about
one, whether a committed one is sound, and the list the launcher restores from.

The last step of every checkpoint (see checkpoints.py) happens here: the job's list
of valid images is published (atomically), retention marks older images OBSOLETE,
the list is published again, and only then are their folders deleted and the rows
DELETED ("publish before delete"). Publishing, retention and deletion of one job
take turns under its lock, so the list never names an image being deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime

from slurm_ckpt.db.catalog import Catalog, CheckpointRecord, DumpResult, JobRecord
from slurm_ckpt.db.retention import RetentionPolicy
from slurm_ckpt.db.states import CheckpointState
from slurm_ckpt.errors import CatalogError, StoreError
from slurm_ckpt.exchange import ResultReply, images_list, read_result
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.checksum import ALGORITHM, hash_bytes
from slurm_ckpt.store.jobfs import JobFiles, JobRef

log = logging.getLogger(__name__)


@dataclass(eq=False)
class JobImages:
    """Reads, verifies, publishes and deletes a job's images.

    Every file operation in a job's folder goes through `files` (store.jobfs: as
    the job's owner, bounded, with a time limit); everything read there is hostile
    input.
    """

    catalog: Catalog
    files: JobFiles
    _: KW_ONLY
    retention: RetentionPolicy
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)  # on _job_locks
    # Publishing, retention and deletion of one job take turns (see job_lock).
    _job_locks: dict[int, threading.Lock] = field(init=False, default_factory=dict)

    def ref(self, job: JobRecord) -> JobRef:
        return JobRef(job.user_name, job.slurm_job_id, job.uid)

    @contextmanager
    def job_lock(self, job_id: int) -> Iterator[None]:
        """Held while a job's image list is published or its images deleted, so
        the list never names an image being deleted (store invariants, writer.py)."""
        with self._lock:
            lock = self._job_locks.setdefault(job_id, threading.Lock())
        with lock:
            yield

    # -- the launcher's answers ------------------------------------------------

    def reply(self, job: JobRecord, seq: int) -> ResultReply | None:
        """The launcher's answer to request `seq`; None while there is none (or its
        folder is stuck: the deadline then decides)."""
        try:
            doc = self.files.read_result(self.ref(job), seq)
        except untrusted.Untrusted as exc:
            return ResultReply(False, f"unreadable result file: {untrusted.text(exc, 200)}")
        except StoreError as exc:
            log.warning("job %d: result %d not read: %s", job.slurm_job_id, seq, exc)
            return None
        return None if doc is None else read_result(doc, seq)

    def examine(self, job: JobRecord, seq: int) -> DumpResult:
        """Check a committed image's structure and owner. Raises StoreError."""
        # Structure only: the launcher hashed it a moment ago; restores re-hash.
        manifest, raw = self.files.verify(self.ref(job), seq)
        path = self.files.jobdir(self.ref(job)).checkpoint(seq)
        if manifest.uid != job.uid or manifest.job_id != job.slurm_job_id:
            raise StoreError(f"manifest of {path} names uid {manifest.uid}, job {manifest.job_id}")
        return DumpResult(
            store_path=str(path),
            total_bytes=manifest.total_size,
            file_count=len(manifest.files),
            dump_seconds=manifest.dump_seconds,
            freeze_seconds=manifest.freeze_seconds,
            criu_version=manifest.criu_version,
            # The bytes verified, never the path read again: it may have been swapped.
            manifest_checksum=f"{ALGORITHM}:{hash_bytes(raw)}",
        )

    # -- the published list, retention, deletion --------------------------------

    def after_valid(self, job: JobRecord, now: datetime) -> None:
        """A new image is VALID: list it, then prune. Raises CatalogError only."""
        try:
            self.publish(job)
            self.apply_retention(job, now)
        except Exception as exc:
            if isinstance(exc, CatalogError):
                raise
            # Retried after the next success; the newest image is listed either way
            # once a publish goes through.
            log.error("job %d: images not published or pruned: %s", job.slurm_job_id, exc)

    def publish(self, job: JobRecord) -> None:
        """Write the list of valid images the launcher restores from, newest first."""
        with self.job_lock(job.id):
            self._publish(job)

    def _publish(self, job: JobRecord) -> None:
        seqs = [c.seq for c in self.catalog.valid_checkpoints(job.id)]
        self.files.publish(self.ref(job), images_list(job.slurm_job_id, seqs))

    def apply_retention(self, job: JobRecord, now: datetime) -> None:
        """Mark, publish, delete: a listed image is never deleted."""
        with self.job_lock(job.id):
            decided = self.catalog.apply_retention(job.id, self.retention, now)
            if decided.obsolete:
                self._publish(job)
                self._delete(job, list(decided.obsolete))

    def delete_obsolete(self, job: JobRecord) -> None:
        """Finish deletions a crash interrupted: publish first (the list may still
        name an OBSOLETE image), then delete."""
        with self.job_lock(job.id):
            obsolete = self.catalog.checkpoints(job.id, states=[CheckpointState.OBSOLETE])
            if not obsolete:
                return
            if self.files.exists(self.ref(job)):
                self._publish(job)
            # A folder that is gone took its images with it: they are deleted too.
            self._delete(job, obsolete)

    def _delete(self, job: JobRecord, checkpoints: list[CheckpointRecord]) -> None:
        for checkpoint in checkpoints:
            if self.files.delete_checkpoint(self.ref(job), checkpoint.seq):
                self.catalog.mark_deleted(checkpoint.id)

    def discard(self, job: JobRecord, seq: int) -> None:
        """Remove an image the catalog keeps FAILED: its folder must not outlive the row."""
        with self.job_lock(job.id):
            self.files.delete_checkpoint(self.ref(job), seq)

    def clean_staging(self, job: JobRecord) -> None:
        """Remove leftovers of dumps cut off by a crash (the caller knows none is in flight)."""
        for removed in self.files.clean_staging(self.ref(job)):
            log.info("job %d: removed unfinished dump staging/%s", job.slurm_job_id, removed)
