"""Walltime chaining: a job near its time limit gets a final checkpoint, then a requeue,
and runs on from that image, up to `walltime.max_chained_runs` times.

The whole flow lives here; its state is in the catalog, so a restarted service
carries on where the previous one stopped:
- a chain step is a checkpoint of kind FINAL that the service requested (only
  chaining requests that kind; the launcher's own final checkpoints are recorded
  by service/finals.py, never collected as outcomes), so its outcome is recognised by its kind, also
  when it was in flight across a restart of the service;
- the runs chained so far are the job's `chained_runs`, counted by the catalog
  in the same transaction that records the requeue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Protocol

from slurm_ckpt.db.catalog import JobRecord
from slurm_ckpt.db.states import CheckpointKind, EventKind
from slurm_ckpt.errors import SlurmError
from slurm_ckpt.service.policy import WalltimeChaining
from slurm_ckpt.service.requests import Outcome, Sent
from slurm_ckpt.slurm.base import JobInfo

log = logging.getLogger(__name__)

CHAINED_REQUEUE = "walltime chaining, run"  # how the requeue's event starts


class ChainCatalog(Protocol):
    def record_requeue(
        self, job_id: int, detail: str, now: datetime, *, chained: bool = False
    ) -> JobRecord:
        """Raises CatalogError."""
        ...

    def record_event(self, job_id: int, kind: EventKind, now: datetime, *, detail: str) -> object:
        """Raises CatalogError."""
        ...


class Requeuer(Protocol):
    def requeue(self, job_id: int) -> None:
        """Raises SlurmError."""
        ...


class FinalCheckpoints(Protocol):
    def busy(self, job_id: int) -> bool: ...

    def request(self, job: JobRecord, now: datetime, *, kind: CheckpointKind) -> Sent:
        """Raises CatalogError, StoreError."""
        ...


@dataclass(eq=False)
class Chainer:
    """Walltime chaining's steps for each running job: the final checkpoint, then the requeue."""

    policy: WalltimeChaining
    catalog: ChainCatalog
    slurm: Requeuer
    checkpoints: FinalCheckpoints
    _: KW_ONLY
    clock: Callable[[], datetime]
    on_requeue: Callable[[], None] = lambda: None
    requeues: threading.Lock = field(default_factory=threading.Lock)  # see Syncer.requeues

    def step(self, record: JobRecord, info: JobInfo, now: datetime) -> bool:
        """Request the final checkpoint of a running job whose time limit is near;
        True when one was sent."""
        decision = self.policy.due(
            running=True,
            limit_at=info.limit_at,
            now=now,
            chained_runs=record.chained_runs,
            opted_out=info.no_chain,
        )
        if not decision.act or record.uncheckpointable_reason:
            # Without an image a requeue would only start the job over.
            return False
        if self.checkpoints.busy(record.id):
            return False  # its checkpoint in flight is awaited first
        sent = self.checkpoints.request(record, now, kind=CheckpointKind.FINAL)
        if sent == Sent.SENT:
            log.info("job %d: %s", info.job_id, decision.reason)
        return sent == Sent.SENT

    def on_outcome(self, outcome: Outcome) -> None:
        """A final checkpoint ended: requeue the job, from it or from the last valid image."""
        if outcome.kind != CheckpointKind.FINAL or not outcome.recorded:
            return  # not a chain step, or one whose requeue its completer made
        if not self.policy.enabled:
            return  # chaining was turned off while the step was in flight
        with self.requeues:
            self._requeue(outcome)

    def _requeue(self, outcome: Outcome) -> None:
        job, now = outcome.job, self.clock()
        try:
            self.slurm.requeue(job.slurm_job_id)
        except SlurmError as exc:
            self.catalog.record_event(
                job.id,
                EventKind.REQUEUE_REFUSED,
                now,
                detail=f"walltime chaining: requeue failed: {exc}",
            )
            return
        source = (
            f"from checkpoint {outcome.seq}"
            if outcome.valid
            else f"final checkpoint failed ({outcome.detail}), from the last valid one"
        )
        self.catalog.record_requeue(
            job.id, f"{CHAINED_REQUEUE} {job.chained_runs + 1}: {source}", now, chained=True
        )
        self.on_requeue()
