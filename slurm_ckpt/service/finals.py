"""The launcher's own final checkpoints: the numbers reserved for them, and their record.

Slurm signals the batch process before a preemption or the time limit
(`--signal=B:USR1@N`), with no request from the service; the launcher then
takes a final checkpoint. It never invents that checkpoint's number: the
catalog allocates every number, and the service keeps a block of the job's
next ones (exchange.FINAL_BLOCK from Catalog.reserved_seq) in
`final-request.json`, as the owner, from the first sync that sees the job
running and again after each checkpoint ends. The launcher takes the lowest
number of the block it has left no trace of, so finals go on while the service
is away, a leftover is stepped over, and a reservation a little stale is
harmless. One number is one checkpoint, and seq order is the order images were
taken.

When the job stops or is requeued, the results in the block are recorded in
order: VALID once an image verifies, else FAILED; then the list of valid images
is published; so are those found before a request is numbered (`settle`: a
final on a signal no stop followed, such as the user's own), or the request
would be answered by that older image. Nothing else in a job's folder is
looked at. A launcher that finds no reservation (the job started while the
service was away, or before its first sync) takes the block after the highest
number its folder has used (from 1 in a new folder): the numbers the catalog
gives a job it has not numbered, or has numbered only as far as the folder
shows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from slurm_ckpt.db.catalog import Catalog, DumpResult, JobRecord
from slurm_ckpt.db.states import CheckpointKind
from slurm_ckpt.errors import CatalogConflict, CatalogError, CkptError
from slurm_ckpt.exchange import FINAL_BLOCK, CheckpointRequest
from slurm_ckpt.service.images import JobImages
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.jobfs import JobFiles
from slurm_ckpt.store.layout import MAX_SEQ

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Finals:
    """Reservations written, by catalog job id, and the recording of final checkpoints."""

    catalog: Catalog
    files: JobFiles
    images: JobImages
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)  # on _written
    _writing: dict[int, threading.Lock] = field(init=False, default_factory=dict)  # by job id
    _written: dict[int, int] = field(init=False, default_factory=dict)  # job id -> seq

    def reserve(self, job: JobRecord) -> None:
        """Write the job's reserved block into its folder (again when it moved).
        Never raises: what could not be written is tried again by the next sync."""
        # The job's own lock, across the catalog read and the write: an older block
        # never lands last, and one stuck folder holds up no other job.
        with self._lock:
            writing = self._writing.setdefault(job.id, threading.Lock())
        with writing:
            try:
                seq = self.catalog.reserved_seq(job.id)
                with self._lock:
                    if self._written.get(job.id) == seq:
                        return
                request = CheckpointRequest(
                    job_id=job.slurm_job_id, seq=seq, kind=CheckpointKind.FINAL
                )
                self.files.write_final_request(self.images.ref(job), request.to_json())
            except (CkptError, OSError) as exc:
                log.debug("job %d: reserved numbers not written: %s", job.slurm_job_id, exc)
                with self._lock:
                    self._written.pop(job.id, None)
                return
            with self._lock:
                self._written[job.id] = seq

    def reserve_running(self, jobs: Iterable[JobRecord]) -> None:
        """A reservation for each running job that has none from this instance yet."""
        for job in jobs:
            with self._lock:
                written = job.id in self._written
            if not written and not job.uncheckpointable_reason:
                self.reserve(job)

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._written.pop(job_id, None)
            self._writing.pop(job_id, None)

    def settle(self, job: JobRecord, now: datetime) -> None:
        """Before a number is given out (no request of the job in flight): when the
        launcher has answered the first reserved number already (a final on a signal
        no stop followed, such as the user's own), record the block first, so the
        request gets a number of its own. One result read when there is none.
        Raises CatalogError; anything else is logged."""
        try:
            answered = self.images.reply(job, self.catalog.reserved_seq(job.id)) is not None
        except CatalogError:
            raise
        except Exception as exc:
            log.warning("job %d: final checkpoints not looked for: %s", job.slurm_job_id, exc)
            return
        if answered:
            self.record(job, now)
        else:
            self.reserve(job)

    def record(self, job: JobRecord, now: datetime) -> list[int]:
        """Record the final checkpoints the launcher took at the job's reserved numbers;
        their seqs. Raises CatalogError; anything else is logged."""
        try:
            recorded = [
                seq for seq in self._reserved_block(job) if self._record(job, seq, now) is not None
            ]
        except CatalogError:
            raise
        except Exception as exc:
            log.warning("job %d: final checkpoints not looked for: %s", job.slurm_job_id, exc)
            return []
        if recorded:
            self.reserve(job)
        return recorded

    def _reserved_block(self, job: JobRecord) -> range:
        start = self.catalog.reserved_seq(job.id)
        return range(start, min(start + FINAL_BLOCK, MAX_SEQ + 1))

    def _record(self, job: JobRecord, seq: int, now: datetime) -> int | None:
        reply = self.images.reply(job, seq)
        if reply is None:
            return None
        dump: DumpResult | None = None
        error = reply.error
        if reply.ok:
            try:
                dump = self.images.examine(job, seq)
            except CatalogError:
                raise
            except (CkptError, OSError) as exc:
                error = f"image refused: {untrusted.text(exc, 500)}"
        try:
            self.catalog.record_final(job.id, seq, now, dump=dump, error=untrusted.text(error))
        except CatalogConflict as exc:
            # Another instance recorded it, or a request took the number meanwhile.
            log.info("job %d: final checkpoint %d not recorded: %s", job.slurm_job_id, seq, exc)
            return None
        if dump is None:
            shown = untrusted.text(error)
            log.warning("job %d: final checkpoint %d FAILED: %s", job.slurm_job_id, seq, shown)
        else:
            log.info("job %d: final checkpoint %d VALID", job.slurm_job_id, seq)
            self.images.after_valid(job, now)
        return seq
