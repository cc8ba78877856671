"""slurm-ckptd: the wiring of sync, per-job checkpoint schedules and result collection.

APScheduler (3.x) runs four kinds of jobs in a thread pool:
- "sync" every `service.poll_interval`: one Slurm query, folded into the catalog;
- "collect" four times a second: results of requests in flight, deadlines;
- "ckpt-<catalog job id>" per running job, every interval of that job, first
  one interval after the job started, offset by a per-job jitter;
  `max_instances=1` and coalescing, so a slow or missed run never piles up;
- "actions" every second: admin actions from ckpt-admin (see actions.py).

The catalog is the memory: at start the service completes what a previous
instance left (requests in flight, deletions, staging folders) and rebuilds
its schedule from Slurm and the catalog. It keeps no state that a SIGKILL
could make wrong.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from slurm_ckpt.config import Settings
from slurm_ckpt.db.catalog import Catalog, JobRecord
from slurm_ckpt.db.retention import RetentionPolicy
from slurm_ckpt.db.states import CheckpointState, EventKind, JobState
from slurm_ckpt.errors import CatalogError, CkptError, SlurmError
from slurm_ckpt.service.actions import ActionRunner
from slurm_ckpt.service.checkpoints import Checkpointer, Outcome, Sent
from slurm_ckpt.service.eligibility import CriuGroup
from slurm_ckpt.service.metrics import Health, Metrics
from slurm_ckpt.service.policy import (
    CHAINED_REQUEUE,
    Admission,
    FailureTracker,
    RequeuePolicy,
    WalltimeChaining,
    first_due,
    jitter_seconds,
)
from slurm_ckpt.service.sync import Syncer, SyncResult
from slurm_ckpt.slurm.base import JobInfo, SlurmAdapter
from slurm_ckpt.store.jobfs import shared_job_files

log = logging.getLogger(__name__)

# How often results are looked for: with admission caps of a few dumps, this
# bounds the checkpoints per second the service can turn over.
COLLECT_EVERY = 0.25
ADMISSION_RETRY = timedelta(seconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _criu_refusal(settings: Settings) -> Callable[[int], str | None]:
    # With the fake backend no job runs CRIU, so no group limits who is checkpointed.
    if settings.launcher.dumper != "criu":
        return lambda uid: None
    return CriuGroup(settings.criu.group, settings.criu.binary).refusal


class Service:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        slurm: SlurmAdapter,
        *,
        cluster: str,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        svc = settings.service
        self.settings = settings
        self.catalog = catalog
        self.slurm = slurm
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.files = shared_job_files(settings.paths.store_root, svc.store_timeout)
        self.checkpointer = Checkpointer(
            catalog,
            slurm,
            self.files,
            admission=Admission(svc.max_concurrent_checkpoints, svc.max_checkpoints_per_store),
            failures=FailureTracker(
                timedelta(seconds=svc.failure_backoff),
                timedelta(seconds=svc.failure_backoff_max),
                svc.give_up_after,
            ),
            deadline=timedelta(seconds=svc.checkpoint_deadline),
            retention=RetentionPolicy(
                keep_last=settings.retention.keep_last or None,
                keep_within=(
                    timedelta(seconds=settings.retention.keep_within)
                    if settings.retention.keep_within
                    else None
                ),
                minimum=settings.retention.minimum,
            ),
            on_outcome=self._on_outcome,
        )
        requeue = settings.requeue
        self.syncer = Syncer(
            catalog,
            slurm,
            self.files,
            cluster,
            requeue=(
                RequeuePolicy(frozenset(requeue.causes), requeue.max_restarts)
                if requeue.enabled
                else None
            ),
            walltime=WalltimeChaining(
                settings.walltime.chaining,
                settings.walltime.max_chained_runs,
                timedelta(seconds=settings.walltime.margin),
            ),
            on_requeue=lambda cause: self.metrics.requeues.labels(cause=cause).inc(),
            on_interrupted=self._interrupted,
            criu_refusal=_criu_refusal(settings),
        )
        self._executor = ThreadPoolExecutor(max_workers=4)
        self.scheduler = BackgroundScheduler(
            executors={"default": self._executor},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone=UTC,
        )
        self._scheduled: dict[int, int] = {}  # catalog job id -> interval it is scheduled at
        self._chain_pending: set[int] = set()  # jobs whose final checkpoint precedes a requeue
        self._due: dict[int, datetime] = {}  # catalog job id -> when its checkpoint was due
        # Jobs refused by admission, oldest first: a freed slot goes to them at once.
        self._waiting: dict[int, None] = {}
        self.scheduler.add_listener(self._note_due, EVENT_JOB_SUBMITTED)
        self._lock = threading.Lock()
        self.last_sync: datetime | None = None
        self.stopped = threading.Event()
        self.actions = ActionRunner(self, cluster)

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        poll = self.settings.service.poll_interval
        self.scheduler.add_job(
            self.sync,
            "interval",
            seconds=poll,
            id="sync",
            next_run_time=self.clock(),
            replace_existing=True,
        )
        self.scheduler.add_job(
            self.collect, "interval", seconds=COLLECT_EVERY, id="collect", replace_existing=True
        )
        self.scheduler.add_job(
            self.actions.run, "interval", seconds=1, id="actions", replace_existing=True
        )
        self.scheduler.start()
        log.info(
            "slurm-ckptd started: poll every %ds, store %s", poll, self.settings.paths.store_root
        )

    def stop(self) -> None:
        """Stop scheduling, then wait for the tasks still running."""
        self.stopped.set()
        # Not shutdown(wait=True): APScheduler holds its job-store lock while it
        # waits, and a running task that calls the scheduler (an admission retry,
        # a schedule change) would wait for that lock forever.
        self.scheduler.shutdown(wait=False)
        self._executor._pool.shutdown(wait=True)
        log.info("slurm-ckptd stopped")

    def health(self) -> Health:
        """Healthy when it synced recently (within three polls) and the scheduler runs."""
        if not self.scheduler.running:
            return Health(False, None, "scheduler not running")
        if self.last_sync is None:
            return Health(False, None, "no successful sync yet")
        age = (self.clock() - self.last_sync).total_seconds()
        healthy = age < 3 * self.settings.service.poll_interval + 5
        return Health(healthy, age, "" if healthy else "sync is late: Slurm or catalog down?")

    def recover(self) -> None:
        """Complete what a previous instance left: requests in flight and deletions.
        (Staging folders are removed when a job is seen not running: _interrupted.)
        One job's trouble is logged and never stops the start."""
        now = self.clock()
        try:
            for job in self.catalog.jobs_with_checkpoints_in(CheckpointState.OBSOLETE):
                try:
                    self.checkpointer.delete_obsolete(job)
                except CatalogError:
                    raise
                except Exception as exc:
                    log.warning("job %d: deletions not finished: %s", job.slurm_job_id, exc)
            for checkpoint in self.catalog.stuck_requests(timedelta(0), now + timedelta(seconds=1)):
                job = self.catalog.get_job(checkpoint.job_id)
                try:
                    self.checkpointer.adopt(checkpoint, job)
                except CatalogError:
                    raise
                except Exception as exc:
                    log.warning("job %d: request not followed: %s", job.slurm_job_id, exc)
                    continue
                log.info(
                    "job %d: following checkpoint %d left in flight",
                    job.slurm_job_id,
                    checkpoint.seq,
                )
            for outcome in self.checkpointer.collect(now):
                log.info(
                    "job %d: checkpoint %d completed on recovery (%s)",
                    outcome.job.slurm_job_id,
                    outcome.seq,
                    "VALID" if outcome.valid else outcome.detail,
                )
        except CatalogError as exc:
            log.error("recovery postponed, catalog unavailable: %s", exc)

    def _interrupted(self, job: JobRecord, now: datetime) -> None:
        """A job stopped running or was requeued: its launcher may have taken a final
        checkpoint of its own; a stopped one leaves no dump running to stage."""
        self.checkpointer.adopt_unrequested(job, now)
        if job.state != JobState.RUNNING:
            try:
                self.checkpointer.clean_staging(job)
            except CatalogError:
                raise
            except Exception as exc:
                log.warning("job %d: staging not cleaned: %s", job.slurm_job_id, exc)

    # -- tasks -------------------------------------------------------------------

    def sync(self) -> None:
        now = self.clock()
        started = threading.get_native_id(), now
        try:
            result = self.syncer.run(now)
        except SlurmError as exc:
            self.metrics.slurm_up.set(0)
            log.warning("sync skipped, Slurm unavailable: %s", exc)
            return
        except CatalogError as exc:
            self.metrics.catalog_up.set(0)
            log.warning("sync skipped, catalog unavailable: %s", exc)
            return
        self.metrics.slurm_up.set(1)
        self.metrics.catalog_up.set(1)
        self.metrics.jobs_tracked.set(result.tracked)
        self._reschedule(result, now)
        self.checkpointer.abandon_gone({k: rec for k, (rec, _) in result.running.items()}, now)
        for record, info in result.walltime_due:
            self._chain(record, info, now)
        self.last_sync = now
        self.metrics.sync_seconds.observe((self.clock() - started[1]).total_seconds())

    def collect(self) -> None:
        try:
            outcomes = self.checkpointer.collect(self.clock())
        except CatalogError as exc:
            self.metrics.catalog_up.set(0)
            log.warning("results not collected, catalog unavailable: %s", exc)
            outcomes = []
        self.metrics.checkpoints_in_flight.set(len(self.checkpointer.in_flight()))
        if outcomes:
            self._admit_waiting(len(outcomes))

    def _admit_waiting(self, freed: int) -> None:
        """Run the retries of the jobs waiting longest now, one per freed slot,
        instead of at their retry time."""
        with self._lock:
            queue = list(self._waiting)
        for job_id in queue:
            if freed <= 0:
                return
            try:
                self.scheduler.modify_job(f"retry-{job_id}", next_run_time=self.clock())
                freed -= 1
            except JobLookupError:  # its retry is running or the job left: not waiting
                with self._lock:
                    self._waiting.pop(job_id, None)

    def checkpoint_now(self, job_id: int, kind: str = "periodic") -> Sent:
        """The per-job scheduled task (also used for admin requests)."""
        if self.stopped.is_set():
            return Sent.FAILED
        now = self.clock()
        try:
            job = self.catalog.get_job(job_id)
            if job.uncheckpointable_reason and kind == "periodic":
                return Sent.FAILED
            sent = self.checkpointer.request(job, now, kind=kind)
        except (CkptError, OSError) as exc:
            log.warning("job %d: checkpoint not requested: %s", job_id, exc)
            return Sent.FAILED
        due = self._due.get(job_id)
        with self._lock:
            if sent == Sent.ADMISSION_FULL:
                self._waiting.setdefault(job_id, None)  # keeps its place in the queue
            else:
                self._waiting.pop(job_id, None)
        if sent == Sent.ADMISSION_FULL:
            # Wait for a free slot, not for the next interval.
            self.scheduler.add_job(
                self.checkpoint_now,
                "date",
                run_date=now + ADMISSION_RETRY,
                args=[job_id, kind],
                id=f"retry-{job_id}",
                replace_existing=True,
            )
        elif sent == Sent.SENT and due is not None:
            self.metrics.schedule_delay_seconds.observe(max((now - due).total_seconds(), 0.0))
            self._due.pop(job_id, None)
        return sent

    def _note_due(self, event: JobSubmissionEvent) -> None:
        """Remember when a periodic checkpoint was due, to measure how late it starts."""
        if event.job_id.startswith("ckpt-") and event.scheduled_run_times:
            self._due[int(event.job_id[5:])] = event.scheduled_run_times[0]

    # -- scheduling --------------------------------------------------------------

    def _reschedule(self, result: SyncResult, now: datetime) -> None:
        """Per-job schedules for exactly the running jobs."""
        with self._lock:
            for job_id, (record, info) in result.running.items():
                if self._scheduled.get(job_id) == record.interval_seconds:
                    continue
                self._schedule(record, info, now)
            stopped = set(self._scheduled) - set(result.running)
            for job_id in stopped:
                self._unschedule(job_id)
                if self.syncer.chained.get(job_id) is None:
                    self.checkpointer.failures.forget(job_id)
        # Outside the lock: a job's folder may be slow, and nobody else waits for it.
        for job_id in stopped:
            try:
                self.checkpointer.clean_staging(self.catalog.get_job(job_id))
            except CatalogError:
                raise
            except Exception as exc:
                log.warning("job %d: staging not cleaned: %s", job_id, exc)

    def _schedule(self, record: JobRecord, info: JobInfo, now: datetime) -> None:
        interval = record.interval_seconds
        started = info.start_time or now
        first = first_due(started, interval)
        # A restarted service or a late sync: never schedule in the past.
        while first < now:
            first += timedelta(seconds=interval)
        first += timedelta(
            seconds=jitter_seconds(record.id, interval, self.settings.service.jitter_fraction)
        )
        self.scheduler.add_job(
            self.checkpoint_now,
            IntervalTrigger(seconds=interval, start_date=first, timezone=UTC),
            args=[record.id],
            id=f"ckpt-{record.id}",
            replace_existing=True,
            next_run_time=first,
        )
        self._scheduled[record.id] = interval
        log.info(
            "job %d: checkpoints every %ds from %s",
            record.slurm_job_id,
            interval,
            first.isoformat(timespec="seconds"),
        )

    def _unschedule(self, job_id: int) -> None:
        self._scheduled.pop(job_id, None)
        self._waiting.pop(job_id, None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(f"ckpt-{job_id}")

    # -- walltime chaining ---------------------------------------------------------

    def _chain(self, record: JobRecord, info: JobInfo, now: datetime) -> None:
        """A final checkpoint before the time limit, then a requeue (see _on_outcome)."""
        if record.uncheckpointable_reason:
            # No image will come: a requeue would only start the job over.
            return
        with self._lock:
            if record.id in self._chain_pending or self.checkpointer.busy(record.id):
                return
            self._chain_pending.add(record.id)
        log.info("job %d: time limit near, final checkpoint before requeue", info.job_id)
        if self.checkpointer.request(record, now, kind="final") != Sent.SENT:
            with self._lock:
                self._chain_pending.discard(record.id)

    def _on_outcome(self, outcome: Outcome) -> None:
        label = "valid" if outcome.valid else "failed"
        self.metrics.checkpoints.labels(outcome=label).inc()
        if outcome.valid:
            self.metrics.checkpoint_bytes.inc(outcome.total_bytes)
            self.metrics.dump_seconds.observe(outcome.dump_seconds)
            self.metrics.freeze_seconds.observe(outcome.freeze_seconds)
        self.actions.on_outcome(outcome)  # an admin action may be waiting for it
        job = outcome.job
        with self._lock:
            chained = job.id in self._chain_pending
            self._chain_pending.discard(job.id)
        if not chained:
            return
        now = self.clock()
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
        runs = self.syncer.chained.get(job.id, 0) + 1
        self.syncer.chained[job.id] = runs
        self.catalog.record_requeue(
            job.id,
            f"{CHAINED_REQUEUE} {runs}: "
            + (
                f"from checkpoint {outcome.seq}"
                if outcome.valid
                else f"final checkpoint failed ({outcome.detail}), from the last valid one"
            ),
            now,
        )
        self.metrics.requeues.labels(cause="walltime").inc()
