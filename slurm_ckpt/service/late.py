"""The late watch: requests FAILED at their deadline whose result may still come.

A request failed at its deadline is still watched `LATE_WATCH` deadlines more: a
result that arrives late makes it VALID (its image verified, then published and
pruned like any other) or gets its folder removed, so no committed image ever
contradicts the catalog. Driven by the Checkpointer's collect (checkpoints.py),
one completer at a time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta

from slurm_ckpt.db.catalog import Catalog, JobRecord
from slurm_ckpt.db.states import EventKind
from slurm_ckpt.errors import CatalogError, CkptError, IllegalTransition
from slurm_ckpt.service.images import JobImages
from slurm_ckpt.service.requests import InFlight, gone

log = logging.getLogger(__name__)

LATE_WATCH = 4  # deadlines a FAILED request is watched for past its own


@dataclass(eq=False)
class LateWatch:
    """Requests FAILED at their deadline, by checkpoint id, until settled or given up."""

    catalog: Catalog
    images: JobImages
    _: KW_ONLY
    deadline: timedelta
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _late: dict[int, InFlight] = field(init=False, default_factory=dict)

    def watch(self, flight: InFlight) -> None:
        with self._lock:
            self._late[flight.checkpoint.id] = flight

    def drop_gone(self, running: dict[int, JobRecord]) -> None:
        """Stop watching requests whose job stopped or was requeued since."""
        with self._lock:
            late = list(self._late.items())
        for checkpoint_id, flight in late:
            if gone(flight, running) is not None:
                with self._lock:
                    self._late.pop(checkpoint_id, None)

    def collect(self, now: datetime) -> None:
        """Settle requests FAILED at their deadline whose result came after all."""
        with self._lock:
            late = list(self._late.items())
        for checkpoint_id, flight in late:
            try:
                settled = self._settle(flight, now)
            except CatalogError:
                raise
            except Exception:
                log.exception("job %d: late result not settled", flight.job.slurm_job_id)
                settled = True
            if settled or now >= flight.deadline + LATE_WATCH * self.deadline:
                with self._lock:
                    self._late.pop(checkpoint_id, None)

    def _settle(self, flight: InFlight, now: datetime) -> bool:
        """True once the late request is settled (VALID, or its image removed)."""
        job, seq = flight.job, flight.checkpoint.seq
        reply = self.images.reply(job, seq)
        if reply is None:
            return False
        if reply.ok:
            try:
                dump = self.images.examine(job, seq)
                self.catalog.mark_valid(flight.checkpoint.id, dump, now)
            except (CkptError, OSError) as exc:
                if isinstance(exc, CatalogError) and not isinstance(exc, IllegalTransition):
                    raise
                log.warning("job %d: late checkpoint %d not kept: %s", job.slurm_job_id, seq, exc)
            else:
                self.catalog.record_event(
                    job.id,
                    EventKind.LATE_CHECKPOINT,
                    now,
                    detail=f"checkpoint {seq} answered after its deadline: VALID",
                    checkpoint_seq=seq,
                )
                log.info("job %d: late checkpoint %d VALID", job.slurm_job_id, seq)
                self.images.after_valid(job, now)
                return True
        # Not usable: its folder must not outlive the FAILED row.
        self.images.discard(job, seq)
        return True
