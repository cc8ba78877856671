"""slurm-ckptd: the service's tasks and its life cycle.

APScheduler (3.x, see schedule.py) runs, in a thread pool:
- "sync" every `service.poll_interval`: one Slurm query, folded into the catalog;
  then the per-job schedules follow the running jobs, requests no launcher will
  answer are failed, and walltime chaining takes its steps (chaining.py);
- "collect" four times a second: results of requests in flight, deadlines;
- "ckpt-<catalog job id>" per running job (schedule.py);
- "actions" every second: admin actions from ckpt-admin (actions.py).

The catalog is the memory: at start the service completes what a previous
instance left (requests in flight, deletions, staging folders) and rebuilds
its schedule from Slurm and the catalog. It keeps no state that a SIGKILL
could make wrong. The collaborators are built in service/main.py (`compose`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.states import CheckpointState
from slurm_ckpt.errors import CatalogError, SlurmError
from slurm_ckpt.service.actions import ActionRunner
from slurm_ckpt.service.chaining import Chainer
from slurm_ckpt.service.checkpoints import Checkpointer
from slurm_ckpt.service.finals import Finals
from slurm_ckpt.service.images import JobImages
from slurm_ckpt.service.metrics import Health, Metrics
from slurm_ckpt.service.schedule import Schedule
from slurm_ckpt.service.sync import Syncer

log = logging.getLogger(__name__)

# How often results are looked for: with admission caps of a few dumps, this
# bounds the checkpoints per second the service can turn over.
COLLECT_EVERY = 0.25


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False, kw_only=True)
class Service:
    """The service's tasks over its collaborators (built by service/main.py `compose`)."""

    catalog: Catalog
    checkpointer: Checkpointer
    images: JobImages
    finals: Finals
    syncer: Syncer
    chainer: Chainer
    actions: ActionRunner
    schedule: Schedule
    metrics: Metrics
    poll_interval: timedelta
    store_root: Path
    clock: Callable[[], datetime] = utcnow
    last_sync: datetime | None = field(init=False, default=None)

    @property
    def stopped(self) -> threading.Event:
        """Set once the service stops (the schedule's, which every task checks)."""
        return self.schedule.stopped

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self.schedule.every(self.sync, self.poll_interval.total_seconds(), "sync", now=True)
        self.schedule.every(self.collect, COLLECT_EVERY, "collect")
        self.schedule.every(self.actions.run, 1, "actions")
        self.schedule.start()
        log.info(
            "slurm-ckptd started: poll every %gs, store %s",
            self.poll_interval.total_seconds(),
            self.store_root,
        )

    def stop(self) -> None:
        """Stop scheduling, then wait for the tasks still running."""
        self.schedule.stop()
        log.info("slurm-ckptd stopped")

    def health(self) -> Health:
        """Healthy when it synced recently (within three polls) and the scheduler runs."""
        if not self.schedule.running:
            return Health(False, None, "scheduler not running")
        if self.last_sync is None:
            return Health(False, None, "no successful sync yet")
        age = (self.clock() - self.last_sync).total_seconds()
        healthy = age < 3 * self.poll_interval.total_seconds() + 5
        return Health(healthy, age, "" if healthy else "sync is late: Slurm or catalog down?")

    def recover(self) -> None:
        """Complete what a previous instance left: requests in flight and deletions.
        (Staging folders are removed when a job is seen not running.)
        One job's trouble is logged and never stops the start."""
        now = self.clock()
        try:
            for job in self.catalog.jobs_with_checkpoints_in(CheckpointState.OBSOLETE):
                try:
                    self.images.delete_obsolete(job)
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
                    "job %d: following checkpoint %d (%s) left in flight",
                    job.slurm_job_id,
                    checkpoint.seq,
                    checkpoint.kind,
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

    # -- tasks -------------------------------------------------------------------

    def sync(self) -> None:
        started = now = self.clock()
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
        stopped = self.schedule.reschedule(result.running, now)
        self._stopped(stopped)
        self.checkpointer.abandon_gone({k: rec for k, (rec, _) in result.running.items()}, now)
        self.finals.reserve_running(record for record, _ in result.running.values())
        for record, info in result.running.values():
            self.chainer.step(record, info, now)
        self.last_sync = now
        self.metrics.sync_seconds.observe((self.clock() - started).total_seconds())

    def _stopped(self, job_ids: set[int]) -> None:
        """Jobs seen not running any more: their dumps' leftovers go, and their
        failures are forgotten unless chaining will run them again."""
        for job_id in job_ids:
            try:
                job = self.catalog.get_job(job_id)
                if job.chained_runs == 0:
                    self.checkpointer.forget(job_id)
                self.checkpointer.clean_staging(job)
            except CatalogError:
                raise
            except Exception as exc:
                log.warning("job %d: staging not cleaned: %s", job_id, exc)

    def collect(self) -> None:
        try:
            outcomes = self.checkpointer.collect(self.clock())
        except CatalogError as exc:
            self.metrics.catalog_up.set(0)
            log.warning("results not collected, catalog unavailable: %s", exc)
            outcomes = []
        self.metrics.checkpoints_in_flight.set(len(self.checkpointer.in_flight()))
        if outcomes:
            self.schedule.admit_waiting(len(outcomes))
