"""Tracked jobs: start tracking, look up, record what Slurm said and the requeues."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from slurm_ckpt.db.models import Event, Job
from slurm_ckpt.db.records import JobRecord, NewJob, columns, from_row
from slurm_ckpt.db.rows import CatalogPart, compare_and_set, get_one, not_found
from slurm_ckpt.db.states import OPEN_JOB_STATES, EventKind, JobState

# Jobs a sync must look at even when Slurm no longer lists them.


class Jobs(CatalogPart):
    """The `jobs` table: one row per Slurm job that asked for checkpoints."""

    def track_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[JobRecord]:
        """Start tracking `jobs`, all or none; CatalogConflict if one is tracked already."""
        with self.db.session(write=True) as session:
            rows = [
                Job(
                    **columns(job),
                    restart_count=0,
                    chained_runs=0,
                    created_at=now,
                    updated_at=now,
                )
                for job in jobs
            ]
            session.add_all(rows)
            session.flush()
            return [from_row(JobRecord, row) for row in rows]

    def find_job(self, cluster: str, slurm_job_id: int) -> JobRecord | None:
        """The job Slurm knows as `slurm_job_id` on `cluster`, or None if it is not tracked."""
        with self.db.session() as session:
            row = session.scalar(
                select(Job).where(Job.cluster == cluster, Job.slurm_job_id == slurm_job_id)
            )
            return None if row is None else from_row(JobRecord, row)

    def get_job(self, job_id: int) -> JobRecord:
        """The job with catalog id `job_id`; CatalogNotFound if there is none."""
        return self._get(Job, JobRecord, job_id)

    def jobs_for_sync(self, cluster: str, slurm_job_ids: Iterable[int]) -> dict[int, JobRecord]:
        """The jobs a sync must look at, by Slurm job id, in one query: those Slurm
        listed and every job still open (pending, running or requeued) in the catalog."""
        ids = list(slurm_job_ids)
        with self.db.session() as session:
            rows = session.scalars(
                select(Job).where(
                    Job.cluster == cluster,
                    or_(Job.slurm_job_id.in_(ids), Job.state.in_(OPEN_JOB_STATES)),
                )
            )
            return {row.slurm_job_id: from_row(JobRecord, row) for row in rows}

    def update_job(
        self,
        job_id: int,
        now: datetime,
        *,
        state: JobState | None = None,
        batch_host: str | None = None,
    ) -> JobRecord:
        """Record what the service saw in Slurm; None leaves a field as it is."""
        values: dict[str, Any] = {"updated_at": now}
        if state is not None:
            values["state"] = state
        if batch_host is not None:
            values["batch_host"] = batch_host
        return self._update_job(job_id, values)

    def mark_uncheckpointable(self, job_id: int, reason: str, now: datetime) -> JobRecord:
        """Say why this job's dumps keep failing; the service backs off on it."""
        return self._update_job(job_id, {"uncheckpointable_reason": reason, "updated_at": now})

    def record_requeue(
        self, job_id: int, detail: str, now: datetime, *, chained: bool = False
    ) -> JobRecord:
        """Count one restart and record a `requeued` event, together; `chained` (a
        walltime-chaining requeue) also counts one chained run, in the same transaction."""
        # Incremented in SQL, so two writers cannot lose one of the counts.
        values: dict[str, Any] = {"restart_count": Job.restart_count + 1, "updated_at": now}
        if chained:
            values["chained_runs"] = Job.chained_runs + 1
        with self.db.session(write=True) as session:
            if not compare_and_set(session, Job, job_id, values):
                raise not_found(Job, job_id)
            session.add(
                Event(job_id=job_id, kind=EventKind.REQUEUED, detail=detail, created_at=now)
            )
            return from_row(JobRecord, get_one(session, Job, job_id))

    def _update_job(self, job_id: int, values: dict[str, Any]) -> JobRecord:
        with self.db.session(write=True) as session:
            if not compare_and_set(session, Job, job_id, values):
                raise not_found(Job, job_id)
            return from_row(JobRecord, get_one(session, Job, job_id))
