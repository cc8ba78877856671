"""The sync task: one Slurm query for every checkpointed job, folded into the catalog.

Each pass tracks new jobs, follows state changes, records every requeue (by
Slurm or by us) with the outcome the launcher reported for that restart, asks
for requeues of jobs that ended badly, and tells the scheduler which jobs run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime

from slurm_ckpt.db.catalog import Catalog, JobRecord, NewJob
from slurm_ckpt.db.states import OPEN_JOB_STATES, EventKind, JobState
from slurm_ckpt.errors import CkptError, SlurmError, StoreError
from slurm_ckpt.exchange import RestartOutcome, read_restart, unreadable_restart
from slurm_ckpt.service.policy import RequeuePolicy
from slurm_ckpt.slurm import states
from slurm_ckpt.slurm.base import JobInfo, SlurmAdapter
from slurm_ckpt.store import untrusted
from slurm_ckpt.store.jobfs import JobFiles, JobRef

log = logging.getLogger(__name__)


# The launcher's report of a restart -> the event recorded for it.
OUTCOME_EVENTS = {
    RestartOutcome.RESTORED: EventKind.RESTORED,
    RestartOutcome.FELL_BACK: EventKind.FELL_BACK,
    RestartOutcome.FRESH_START: EventKind.FRESH_START,
    RestartOutcome.FAILED: EventKind.RESTORE_FAILED,
}


def job_state(slurm_state: str) -> JobState:
    """Slurm's long state name -> the catalog's coarser one."""
    if slurm_state in states.RUNNING or slurm_state in states.TRANSITIONAL:
        return JobState.RUNNING
    if slurm_state == "REQUEUED" or slurm_state.startswith("REQUEUE"):
        return JobState.REQUEUED
    if slurm_state in states.PENDING:
        return JobState.PENDING
    if slurm_state == "COMPLETED":
        return JobState.COMPLETED
    if slurm_state == "CANCELLED":
        return JobState.CANCELLED
    return JobState.FAILED


@dataclass
class SyncResult:
    running: dict[int, tuple[JobRecord, JobInfo]] = field(default_factory=dict)  # by catalog id
    tracked: int = 0
    requeued: int = 0


@dataclass(eq=False)
class Syncer:
    """Folds what Slurm says of the checkpointed jobs into the catalog, a pass per `run`."""

    catalog: Catalog
    slurm: SlurmAdapter
    files: JobFiles
    cluster: str
    _: KW_ONLY
    requeue: RequeuePolicy | None  # None: the service requeues no job that ended badly
    on_requeue: Callable[[str], None] = lambda cause: None
    # Called when a job stopped running or was requeued: the moment its launcher
    # may have taken a final checkpoint of its own.
    on_interrupted: Callable[[JobRecord, datetime], object] = lambda job, now: None
    # Why a uid's jobs cannot be checkpointed (not allowed to run CRIU), or None.
    criu_refusal: Callable[[int], str | None] = lambda uid: None
    # Held across a sync pass and by whoever requeues a job and records it, so a
    # pass sees each of our requeues either not yet made or already recorded, never
    # as one "by Slurm" (counted twice). The composition root shares one.
    requeues: threading.Lock = field(default_factory=threading.Lock)
    # Restart reports already turned into events: (catalog job id, restart count).
    _reported: set[tuple[int, int]] = field(init=False, default_factory=set)

    def run(self, now: datetime) -> SyncResult:
        with self.requeues:
            return self._run(now)

    def _run(self, now: datetime) -> SyncResult:
        jobs = self.slurm.list_checkpointed_jobs()
        known = self.catalog.jobs_for_sync(self.cluster, (j.job_id for j in jobs))
        self._track_new([j for j in jobs if j.job_id not in known], known, now)
        result = SyncResult(tracked=len(jobs))
        for info in jobs:
            record = known.pop(info.job_id, None)
            before = record.state if record is not None else None
            restarts_before = record.restart_count if record is not None else 0
            try:
                record = self._fold(record, info, now)
                if record.restart_count > restarts_before or (
                    before == JobState.RUNNING and record.state != JobState.RUNNING
                ):
                    self.on_interrupted(record, now)
            except CkptError as exc:
                log.error("job %d: sync failed: %s", info.job_id, exc)
                continue
            except Exception:
                # One job's unexpected failure must not stop the others' sync.
                log.exception("job %d: sync failed", info.job_id)
                continue
            if info.is_running and info.batch_host:
                result.running[record.id] = (record, info)
            elif info.is_finished and before in OPEN_JOB_STATES and self._judge(record, info, now):
                # Judged once, when the catalog first sees it finished: a restarted
                # service does not judge (or requeue) a job again.
                result.requeued += 1
        for record in known.values():
            # Slurm no longer lists it (MinJobAge passed while we were away).
            if record.state in OPEN_JOB_STATES:
                self.catalog.update_job(record.id, now, state=JobState.COMPLETED)
                log.info("job %d: gone from Slurm, closed", record.slurm_job_id)
        return result

    def _track_new(self, new: list[JobInfo], known: dict[int, JobRecord], now: datetime) -> None:
        """Start tracking new jobs in one transaction (a thousand may appear at once)."""
        if not new:
            return
        records = self.catalog.track_jobs(
            [
                NewJob(
                    cluster=self.cluster,
                    slurm_job_id=info.job_id,
                    user_name=info.user,
                    uid=info.uid,
                    interval_seconds=info.interval,
                    state=job_state(info.state),
                    batch_host=info.batch_host,
                )
                for info in new
            ],
            now,
        )
        for record in records:
            known[record.slurm_job_id] = record
            log.info("job %d: tracking (every %ds)", record.slurm_job_id, record.interval_seconds)
            # The user's folder in any case: a job that runs without checkpoints
            # still has its launcher's log there.
            refused = self._prepare_user(record)
            refused = self.criu_refusal(record.uid) or refused
            if refused is None:
                continue
            try:
                known[record.slurm_job_id] = self.catalog.mark_uncheckpointable(
                    record.id, refused, now
                )
                self.catalog.record_event(
                    record.id, EventKind.UNCHECKPOINTABLE, now, detail=refused
                )
            except CkptError as exc:
                log.error("job %d: not marked uncheckpointable: %s", record.slurm_job_id, exc)
                continue
            log.warning("job %d: uncheckpointable: %s", record.slurm_job_id, refused)

    def _prepare_user(self, record: JobRecord) -> str | None:
        """Make the user's folder in the store, where the launcher makes the job's
        own; the reason the job cannot be checkpointed when that fails."""
        try:
            self.files.prepare_user(record.user_name, record.uid)
        except (StoreError, OSError) as exc:
            log.error("job %d: %s", record.slurm_job_id, exc)
            return f"no folder for the user in the image store: {exc}"
        return None

    def _fold(self, record: JobRecord | None, info: JobInfo, now: datetime) -> JobRecord:
        state = job_state(info.state)
        if record is None:
            raise CkptError(f"job {info.job_id} is not tracked")
        if record.uid != info.uid:
            # Slurm reused the id (ids wrapped, controller state reset): this is
            # another user's job. Acting on it under the old owner's record would
            # let that user see and steer it and use their folder: leave it alone.
            raise CkptError(
                f"job id {info.job_id} is now uid {info.uid}'s, the catalog has uid "
                f"{record.uid}'s: not checkpointed"
            )
        while record.restart_count < info.restarts:
            # A requeue we did not order (node failure, preemption, an admin).
            record = self.catalog.record_requeue(
                record.id, f"requeued by Slurm (restart {record.restart_count + 1})", now
            )
            self.on_requeue("slurm")
        if state != record.state or info.batch_host != record.batch_host:
            record = self.catalog.update_job(
                record.id, now, state=state, batch_host=info.batch_host
            )
        if record.restart_count > 0:
            self._record_restart_report(record, now)
        return record

    def _record_restart_report(self, record: JobRecord, now: datetime) -> None:
        key = (record.id, record.restart_count)
        if key in self._reported:
            return
        try:
            doc = self.files.read_restart_report(
                JobRef(record.user_name, record.slurm_job_id, record.uid), record.restart_count
            )
            if doc is None:
                return  # the launcher has not started yet
            report = read_restart(doc)
        except untrusted.Untrusted as exc:
            report = unreadable_restart(f"unreadable report: {exc}")
        except StoreError as exc:
            log.warning("job %d: restart report not read: %s", record.slurm_job_id, exc)
            return  # read again at the next sync
        self._reported.add(key)
        if self._already_recorded(record):
            return
        kind = OUTCOME_EVENTS[report.outcome]
        took = report.launcher_seconds
        detail = (
            f"restart {record.restart_count}: {report.outcome}"
            + (f" in {took:.2f}s" if took else "")
            + (f" ({report.failures})" if report.failures else "")
        )
        self.catalog.record_event(record.id, kind, now, detail=detail, checkpoint_seq=report.seq)
        log.info("job %d: %s", record.slurm_job_id, detail)

    def _already_recorded(self, record: JobRecord) -> bool:
        # After a restart of the service: the report may have been recorded before.
        marker = f"restart {record.restart_count}:"
        return any(
            e.detail.startswith(marker) and e.kind in OUTCOME_EVENTS.values()
            for e in self.catalog.events(record.id, limit=20)
        )

    def _judge(self, record: JobRecord, info: JobInfo, now: datetime) -> bool:
        """Requeue a job that ended badly, by policy; True when it was requeued."""
        if self.requeue is None or info.state == "COMPLETED":
            return False
        has_image = bool(self.catalog.valid_checkpoints(record.id))
        decision = self.requeue.decide(info.state, info.restarts, has_image)
        if not decision.requeue:
            self.catalog.record_event(
                record.id, EventKind.REQUEUE_REFUSED, now, detail=f"{info.state}: {decision.reason}"
            )
            log.info("job %d: not requeued: %s", info.job_id, decision.reason)
            return False
        try:
            self.slurm.requeue(info.job_id)
        except SlurmError as exc:
            self.catalog.record_event(
                record.id, EventKind.REQUEUE_REFUSED, now, detail=f"scontrol requeue failed: {exc}"
            )
            log.error("job %d: requeue failed: %s", info.job_id, exc)
            return False
        self.catalog.record_requeue(
            record.id, f"requeued after {info.state}: {decision.reason}", now
        )
        self.on_requeue(info.state.lower())
        log.info("job %d: requeued after %s", info.job_id, info.state)
        return True
