"""Checkpoints: numbering, request, the launcher's own final, the state machine's
moves, retention, and the restore order.

Two service instances cannot both act on one checkpoint: every move reads the
row (FOR UPDATE where the database has row locks), checks it against the state
machine, and is a compare-and-set on the state it read. Seq numbers are unique
per job, and a partial unique index allows one REQUESTED checkpoint per job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from slurm_ckpt.db.models import Checkpoint, Job
from slurm_ckpt.db.records import CheckpointRecord, DumpResult, JobRecord, from_row
from slurm_ckpt.db.retention import RetentionPlan, RetentionPolicy, plan
from slurm_ckpt.db.rows import CatalogPart, added, compare_and_set, get_one
from slurm_ckpt.db.states import CheckpointKind, CheckpointState, check_transition
from slurm_ckpt.errors import CatalogConflict
from slurm_ckpt.exchange import FINAL_BLOCK


def transition(
    session: Session, row: Checkpoint, target: CheckpointState, values: Mapping[str, Any]
) -> None:
    """Move `row`, as read in this session, to `target` with `values`.

    Raises IllegalTransition for a move the state machine forbids, CatalogConflict
    when another writer moved the row since it was read. The row is not refreshed.
    """
    check_transition(row.state, target, checkpoint_id=row.id)
    if not compare_and_set(
        session, Checkpoint, row.id, {"state": target, **values}, expect={"state": row.state}
    ):
        raise CatalogConflict(
            f"checkpoint {row.id} changed state while it was becoming {target}: "
            "another writer got there first"
        )


def move(
    session: Session,
    checkpoint_id: int,
    target: CheckpointState,
    values: Mapping[str, Any] | None = None,
) -> CheckpointRecord:
    """Lock checkpoint `checkpoint_id`, move it to `target` (see `transition`), return it."""
    row = get_one(session, Checkpoint, checkpoint_id, lock=True)
    transition(session, row, target, values or {})
    session.refresh(row)
    return from_row(CheckpointRecord, row)


class Checkpoints(CatalogPart):
    """The `checkpoints` table: each job's images, numbered by seq."""

    def request_checkpoint(
        self, job_id: int, now: datetime, kind: CheckpointKind = CheckpointKind.PERIODIC
    ) -> CheckpointRecord:
        """Record the job's next checkpoint as REQUESTED, before the request is sent.

        Raises CatalogNotFound for an unknown job, CatalogConflict when a dump of
        this job is already in flight (from this or another service instance).
        """
        with self.db.session(write=True) as session:
            # The job row lock makes concurrent requests for one job take turns.
            job = get_one(session, Job, job_id, lock=True)
            in_flight = session.scalar(_in_flight(job_id))
            if in_flight is not None:
                raise CatalogConflict(f"job {job_id} already has checkpoint {in_flight} in flight")
            row = Checkpoint(
                job_id=job_id,
                seq=_after_last(session, job_id),
                state=CheckpointState.REQUESTED,
                kind=kind,
                job_restart_count=job.restart_count,
                created_at=now,
            )
            return added(session, row, CheckpointRecord)

    def reserved_seq(self, job_id: int) -> int:
        """Where the numbers reserved for the launcher's own final checkpoints start
        (final-request.json, FINAL_BLOCK of them): at the request in flight, which the
        launcher answers once whichever signal comes first; else after the highest
        this job has had. Numbers are allocated here only, so seq order is the order
        the images were taken."""
        with self.db.session() as session:
            in_flight = session.scalar(_in_flight(job_id))
            return in_flight if in_flight is not None else _after_last(session, job_id)

    def record_final(
        self,
        job_id: int,
        seq: int,
        now: datetime,
        *,
        dump: DumpResult | None,
        error: str = "",
    ) -> CheckpointRecord:
        """Record the launcher's own final checkpoint (taken on Slurm's signal before a
        preemption or the time limit, with the number reserved for it): VALID, kind
        FINAL, with its verified `dump`; FAILED with `error` when there is none.

        Raises CatalogConflict when `seq` is not among the job's reserved numbers
        (a request is in flight, or `seq` is not above every number used yet).
        """
        with self.db.session(write=True) as session:
            job = get_one(session, Job, job_id, lock=True)
            start = _after_last(session, job_id)
            in_flight = session.scalar(_in_flight(job_id)) is not None
            if in_flight or not start <= seq < start + FINAL_BLOCK:
                raise CatalogConflict(
                    f"job {job_id}: {seq} is not among its reserved checkpoint numbers"
                )
            facts = (
                {"state": CheckpointState.VALID, **dump.columns()}
                if dump is not None
                else {"state": CheckpointState.FAILED, "error": error}
            )
            row = Checkpoint(
                job_id=job_id,
                seq=seq,
                kind=CheckpointKind.FINAL,
                **facts,
                job_restart_count=job.restart_count,
                created_at=now,
                completed_at=now,
            )
            return added(session, row, CheckpointRecord)

    def get_checkpoint(self, checkpoint_id: int) -> CheckpointRecord:
        """The checkpoint with catalog id `checkpoint_id`; CatalogNotFound if there is none."""
        return self._get(Checkpoint, CheckpointRecord, checkpoint_id)

    def mark_valid(self, checkpoint_id: int, result: DumpResult, now: datetime) -> CheckpointRecord:
        """REQUESTED -> VALID with the verified dump's facts; also FAILED -> VALID for
        a request failed at its deadline whose image arrived and verified after all."""
        values = {**result.columns(), "error": None, "completed_at": now}
        with self.db.session(write=True) as session:
            return move(session, checkpoint_id, CheckpointState.VALID, values)

    def mark_failed(self, checkpoint_id: int, error: str, now: datetime) -> CheckpointRecord:
        """REQUESTED -> FAILED, with the reason."""
        values = {"error": error, "completed_at": now}
        with self.db.session(write=True) as session:
            return move(session, checkpoint_id, CheckpointState.FAILED, values)

    def mark_deleted(self, checkpoint_id: int) -> CheckpointRecord:
        """OBSOLETE -> DELETED, once its files are gone."""
        with self.db.session(write=True) as session:
            return move(session, checkpoint_id, CheckpointState.DELETED)

    def apply_retention(
        self, job_id: int, policy: RetentionPolicy, now: datetime
    ) -> RetentionPlan[CheckpointRecord]:
        """Plan retention for one job and mark the obsolete checkpoints, together.

        This is the only way to OBSOLETE: files are deleted only after it (mark_deleted).
        """
        with self.db.session(write=True) as session:
            get_one(session, Job, job_id, lock=True)
            rows = {
                row.id: row
                for row in session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))
            }
            decided = plan([from_row(CheckpointRecord, row) for row in rows.values()], policy, now)
            for checkpoint in decided.obsolete:
                transition(session, rows[checkpoint.id], CheckpointState.OBSOLETE, {})
            return decided

    def newest_valid(self, job_id: int) -> CheckpointRecord | None:
        """The image a restart should try first, or None."""
        with self.db.session() as session:
            row = session.scalar(_valid(job_id).limit(1))
            return None if row is None else from_row(CheckpointRecord, row)

    def valid_checkpoints(self, job_id: int) -> list[CheckpointRecord]:
        """The job's valid checkpoints, newest first: the restore fallback order."""
        with self.db.session() as session:
            return [from_row(CheckpointRecord, row) for row in session.scalars(_valid(job_id))]

    def checkpoints(
        self, job_id: int, *, states: Iterable[CheckpointState] | None = None
    ) -> list[CheckpointRecord]:
        """The job's checkpoints (optionally only in `states`), newest first."""
        query = select(Checkpoint).where(Checkpoint.job_id == job_id)
        if states is not None:
            query = query.where(Checkpoint.state.in_(list(states)))
        with self.db.session() as session:
            rows = session.scalars(query.order_by(Checkpoint.seq.desc()))
            return [from_row(CheckpointRecord, row) for row in rows]

    def jobs_with_checkpoints_in(self, state: CheckpointState) -> list[JobRecord]:
        """Every job that has a checkpoint in `state` (recovery: OBSOLETE ones)."""
        with self.db.session() as session:
            rows = session.scalars(
                select(Job).where(
                    Job.id.in_(select(Checkpoint.job_id).where(Checkpoint.state == state))
                )
            )
            return [from_row(JobRecord, row) for row in rows]

    def stuck_requests(self, older_than: timedelta, now: datetime) -> list[CheckpointRecord]:
        """Checkpoints still REQUESTED `older_than` after they were requested, oldest first."""
        cutoff = now - older_than
        with self.db.session() as session:
            rows = session.scalars(
                select(Checkpoint)
                .where(
                    Checkpoint.state == CheckpointState.REQUESTED,
                    Checkpoint.created_at < cutoff,
                )
                .order_by(Checkpoint.created_at, Checkpoint.id)
            )
            return [from_row(CheckpointRecord, row) for row in rows]


def _in_flight(job_id: int) -> Select[tuple[int]]:
    return select(Checkpoint.seq).where(
        Checkpoint.job_id == job_id, Checkpoint.state == CheckpointState.REQUESTED
    )


def _after_last(session: Session, job_id: int) -> int:
    """1 + the highest seq the job has had (DELETED rows keep theirs: never reused)."""
    last = session.scalar(select(func.max(Checkpoint.seq)).where(Checkpoint.job_id == job_id))
    return (last or 0) + 1


def _valid(job_id: int) -> Select[tuple[Checkpoint]]:
    return (
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.state == CheckpointState.VALID)
        .order_by(Checkpoint.seq.desc())
    )
