"""The launcher's own final checkpoint: the number reserved for it, and its record.

Slurm signals the batch process before a preemption or the time limit
(`--signal=B:USR1@N`), with no request from the service; the launcher then
takes a final checkpoint. It never picks that checkpoint's number: the catalog
allocates every number (Catalog.reserved_seq), and the service keeps the job's
reserved one in `final-request.json`, as the owner, from the first sync that
sees the job running and again after each checkpoint ends. So a number means
one checkpoint, and seq order is the order images were taken.

When the job stops or is requeued, the result at the reserved number, if the
launcher wrote one, is recorded: VALID once its image verifies, else FAILED;
then the list of valid images is published. Nothing else in a job's folder is
looked at. Without a reservation (the service never saw the job running) the
launcher takes no final checkpoint and says so in its log.
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
from slurm_ckpt.exchange import CheckpointRequest
from slurm_ckpt.service.images import JobImages
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.jobfs import JobFiles

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Finals:
    """Reservations written, by catalog job id, and the recording of final checkpoints."""

    catalog: Catalog
    files: JobFiles
    images: JobImages
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _written: dict[int, int] = field(init=False, default_factory=dict)  # job id -> seq

    def reserve(self, job: JobRecord) -> None:
        """Write the job's reserved number into its folder (again when it changed).
        Never raises: what could not be written is tried again by the next sync."""
        try:
            seq = self.catalog.reserved_seq(job.id)
            with self._lock:
                if self._written.get(job.id) == seq:
                    return
            request = CheckpointRequest(job_id=job.slurm_job_id, seq=seq, kind=CheckpointKind.FINAL)
            self.files.write_final_request(self.images.ref(job), request.to_json())
        except (CkptError, OSError) as exc:
            log.debug("job %d: final checkpoint number not written: %s", job.slurm_job_id, exc)
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

    def record(self, job: JobRecord, now: datetime) -> int | None:
        """Record the final checkpoint at the job's reserved number, if the launcher
        took one; its seq, or None. Raises CatalogError; anything else is logged."""
        try:
            return self._record(job, now)
        except CatalogError:
            raise
        except Exception as exc:
            log.warning("job %d: final checkpoint not looked for: %s", job.slurm_job_id, exc)
            return None

    def _record(self, job: JobRecord, now: datetime) -> int | None:
        seq = self.catalog.reserved_seq(job.id)
        reply = self.images.reply(job, seq)
        if reply is None:
            return None
        dump: DumpResult | None = None
        error = reply.error
        if reply.ok:
            try:
                dump = self.images.examine(job, seq)
            except (CkptError, OSError) as exc:
                error = f"image refused: {untrusted.text(exc, 500)}"
        try:
            self.catalog.record_final(job.id, seq, now, dump=dump, error=untrusted.text(error))
        except CatalogConflict as exc:
            # Another instance recorded it, or a request took the number meanwhile.
            log.info("job %d: final checkpoint %d not recorded: %s", job.slurm_job_id, seq, exc)
            return None
        if dump is None:
            log.warning(
                "job %d: final checkpoint %d FAILED: %s",
                job.slurm_job_id,
                seq,
                untrusted.text(error),
            )
        else:
            log.info("job %d: final checkpoint %d VALID", job.slurm_job_id, seq)
            self.images.after_valid(job, now)
        self.reserve(job)
        return seq
