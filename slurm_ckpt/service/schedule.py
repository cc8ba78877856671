"""When checkpoints are asked for: APScheduler (3.x) running the service's tasks in a
thread pool, one schedule per running job, and admission retries.

- "ckpt-<catalog job id>": per running job, every interval of that job, first one
  interval after the job started, offset by a per-job jitter; `max_instances=1`
  and coalescing, so a slow or missed run never piles up;
- "retry-<catalog job id>": a checkpoint refused by admission, retried in a
  second, or at once when a slot frees (oldest waiting first).

Every task runs through `_tracked`, so `stop` can wait for the running ones
without APScheduler's own shutdown(wait=True), which holds its job-store lock
while it waits: a running task that calls the scheduler would wait forever.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from slurm_ckpt.db.catalog import Catalog, JobRecord
from slurm_ckpt.db.states import CheckpointKind
from slurm_ckpt.errors import CkptError
from slurm_ckpt.service.checkpoints import Checkpointer
from slurm_ckpt.service.metrics import Metrics
from slurm_ckpt.service.policy import first_due, jitter_seconds
from slurm_ckpt.service.requests import InFlight, Sent
from slurm_ckpt.slurm.base import JobInfo

log = logging.getLogger(__name__)

ADMISSION_RETRY = timedelta(seconds=1)
WORKERS = 4


@dataclass(eq=False)
class Schedule:
    """The scheduler and every per-job schedule; `checkpoint_now` is what they run."""

    catalog: Catalog
    checkpointer: Checkpointer
    metrics: Metrics
    _: KW_ONLY
    jitter_fraction: float
    clock: Callable[[], datetime]
    stopped: threading.Event = field(init=False, default_factory=threading.Event)
    scheduler: BackgroundScheduler = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _idle: threading.Condition = field(init=False)  # on _lock
    _running: int = field(init=False, default=0)  # tasks running now
    # Catalog job id -> the interval it is scheduled at, and when its checkpoint was due.
    _scheduled: dict[int, int] = field(init=False, default_factory=dict)
    _due: dict[int, datetime] = field(init=False, default_factory=dict)
    # Jobs refused by admission, oldest first: a freed slot goes to them at once.
    _waiting: dict[int, None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=WORKERS)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._note_due, EVENT_JOB_SUBMITTED)
        self._idle = threading.Condition(self._lock)

    # -- life cycle --------------------------------------------------------------

    def every(
        self, task: Callable[[], None], seconds: float, name: str, *, now: bool = False
    ) -> None:
        """Run `task` every `seconds` (the first time at once when `now`)."""
        extra: dict[str, Any] = {"next_run_time": self.clock()} if now else {}
        self.scheduler.add_job(
            self._tracked(task),
            "interval",
            seconds=seconds,
            id=name,
            replace_existing=True,
            **extra,
        )

    def once(self, task: Callable[..., object], at: datetime, name: str, *args: object) -> None:
        self.scheduler.add_job(
            self._tracked(task),
            "date",
            run_date=at,
            args=list(args),
            id=name,
            replace_existing=True,
        )

    def start(self) -> None:
        self.scheduler.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop scheduling, then wait for the tasks still running."""
        self.stopped.set()
        self.scheduler.shutdown(wait=False)
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0, timeout)

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def _tracked(self, task: Callable[..., object]) -> Callable[..., None]:
        @functools.wraps(task)
        def run(*args: object) -> None:
            with self._lock:
                self._running += 1
            try:
                if not self.stopped.is_set():
                    task(*args)
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()

        return run

    # -- checkpoints -------------------------------------------------------------

    def in_flight(self) -> list[InFlight]:
        return self.checkpointer.in_flight()

    def checkpoint_now(self, job_id: int, kind: CheckpointKind = CheckpointKind.PERIODIC) -> Sent:
        """The per-job scheduled task (also used for admin requests)."""
        if self.stopped.is_set():
            return Sent.FAILED
        now = self.clock()
        try:
            job = self.catalog.get_job(job_id)
            if job.uncheckpointable_reason and kind == CheckpointKind.PERIODIC:
                return Sent.FAILED
            sent = self.checkpointer.request(job, now, kind=kind)
        except (CkptError, OSError) as exc:
            log.warning("job %d: checkpoint not requested: %s", job_id, exc)
            return Sent.FAILED
        with self._lock:
            due = self._due.pop(job_id, None) if sent == Sent.SENT else self._due.get(job_id)
            if sent == Sent.ADMISSION_FULL:
                self._waiting.setdefault(job_id, None)  # keeps its place in the queue
            else:
                self._waiting.pop(job_id, None)
        if sent == Sent.ADMISSION_FULL:
            # Wait for a free slot, not for the next interval.
            self.once(self.checkpoint_now, now + ADMISSION_RETRY, f"retry-{job_id}", job_id, kind)
        elif sent == Sent.SENT and due is not None:
            self.metrics.schedule_delay_seconds.observe(max((now - due).total_seconds(), 0.0))
        return sent

    def admit_waiting(self, freed: int) -> None:
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

    def _note_due(self, event: JobSubmissionEvent) -> None:
        """Remember when a periodic checkpoint was due, to measure how late it starts."""
        # Not under self._lock: APScheduler may call this with its own lock held,
        # and reschedule() holds ours while it calls APScheduler.
        if event.job_id.startswith("ckpt-") and event.scheduled_run_times:
            self._due[int(event.job_id[5:])] = event.scheduled_run_times[0]

    # -- per-job schedules ---------------------------------------------------------

    def reschedule(self, running: dict[int, tuple[JobRecord, JobInfo]], now: datetime) -> set[int]:
        """Per-job schedules for exactly the running jobs; the catalog ids of the jobs
        that stopped running since the last call."""
        with self._lock:
            for job_id, (record, info) in running.items():
                if self._scheduled.get(job_id) != record.interval_seconds:
                    self._schedule(record, info, now)
            stopped = set(self._scheduled) - set(running)
            for job_id in stopped:
                self._unschedule(job_id)
        return stopped

    def _schedule(self, record: JobRecord, info: JobInfo, now: datetime) -> None:
        interval = record.interval_seconds
        first = first_due(info.start_time or now, interval)
        # A restarted service or a late sync: never schedule in the past.
        while first < now:
            first += timedelta(seconds=interval)
        first += timedelta(seconds=jitter_seconds(record.id, interval, self.jitter_fraction))
        self.scheduler.add_job(
            self._tracked(self.checkpoint_now),
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
        self._due.pop(job_id, None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(f"ckpt-{job_id}")
