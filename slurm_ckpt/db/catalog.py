"""Catalog queries and state changes; every public method is one transaction.

Methods return frozen records, never ORM objects, so nothing lazy-loads after
the session closed. Two service instances cannot both act on one checkpoint:
a state change is a compare-and-set UPDATE (`... WHERE state = <the state we
read>`) on a row read with FOR UPDATE where the database has row locks
(PostgreSQL; SQLite serialises writers instead), seq numbers are unique per
job, and a partial unique index allows one REQUESTED checkpoint per job.
Raises: CatalogError subclasses only (see slurm_ckpt.errors).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, and_, case, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from slurm_ckpt.db.models import Action, Checkpoint, Event, Job
from slurm_ckpt.db.retention import RetentionPlan, RetentionPolicy, plan
from slurm_ckpt.db.session import Database
from slurm_ckpt.db.states import (
    ACTION_TRANSITIONS,
    ActionKind,
    ActionState,
    CheckpointState,
    EventKind,
    JobState,
    check_action_transition,
    check_transition,
)
from slurm_ckpt.errors import CatalogConflict, CatalogNotFound


@dataclass(frozen=True)
class NewJob:
    """What the service knows about a job when it starts tracking it."""

    cluster: str
    slurm_job_id: int
    user_name: str
    uid: int
    interval_seconds: int
    state: JobState = JobState.PENDING
    batch_host: str | None = None


@dataclass(frozen=True)
class JobRecord:
    id: int
    cluster: str
    slurm_job_id: int
    user_name: str
    uid: int
    interval_seconds: int
    state: JobState
    batch_host: str | None
    restart_count: int
    uncheckpointable_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Job) -> JobRecord:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


_JOB_FIELDS = tuple(JobRecord.__dataclass_fields__)


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    job_id: int
    seq: int
    state: CheckpointState
    store_path: str | None
    total_bytes: int | None
    file_count: int | None
    dump_seconds: float | None
    freeze_seconds: float | None
    criu_version: str | None
    manifest_checksum: str | None
    error: str | None
    job_restart_count: int
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, row: Checkpoint) -> CheckpointRecord:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class EventRecord:
    id: int
    job_id: int
    kind: EventKind
    checkpoint_seq: int | None
    detail: str
    created_at: datetime

    @classmethod
    def of(cls, row: Event) -> EventRecord:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ActionRecord:
    """An admin request and how far the service got with it."""

    id: int
    kind: ActionKind
    cluster: str
    slurm_job_id: int | None
    node: str | None
    # {"checkpoint_first": bool} for requeue, {"reason": str} for drain, {} otherwise
    options: dict[str, Any]
    state: ActionState
    detail: str  # the result, one line: what was done, or why not
    progress: str  # while RUNNING: where it is ("checkpoint 4 in flight")
    requested_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Action) -> ActionRecord:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class JobSummary:
    """One line of `ckpt-admin list-jobs`."""

    job: JobRecord
    last_valid_at: datetime | None  # completion time of the newest valid checkpoint
    valid_count: int
    valid_bytes: int  # total size of the valid checkpoints
    restart_count: int


@dataclass(frozen=True)
class CheckpointActivity:
    """A job's latest checkpoint request and latest failure (`ckpt-admin list-jobs`)."""

    last_requested_at: datetime | None  # created_at of the newest checkpoint, in any state
    last_failed_at: datetime | None  # completed_at of the newest checkpoint that has an error
    last_failed_seq: int | None
    last_error: str | None


@dataclass(frozen=True)
class DumpResult:
    """A verified dump, as the service read it from the store."""

    store_path: str
    total_bytes: int
    file_count: int
    dump_seconds: float
    freeze_seconds: float
    criu_version: str
    manifest_checksum: str


class Catalog:
    """The service's memory: tracked jobs, their checkpoints and events."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # Jobs

    def track_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[JobRecord]:
        """Start tracking `jobs`, all or none; CatalogConflict if one is tracked already."""
        with self.db.session(write=True) as session:
            rows = [
                Job(
                    cluster=job.cluster,
                    slurm_job_id=job.slurm_job_id,
                    user_name=job.user_name,
                    uid=job.uid,
                    interval_seconds=job.interval_seconds,
                    state=job.state,
                    batch_host=job.batch_host,
                    restart_count=0,
                    created_at=now,
                    updated_at=now,
                )
                for job in jobs
            ]
            session.add_all(rows)
            session.flush()
            return [JobRecord.of(row) for row in rows]

    def track_job(self, job: NewJob, now: datetime) -> JobRecord:
        """Start tracking one job; CatalogConflict if it is tracked already."""
        return self.track_jobs([job], now)[0]

    def find_job(self, cluster: str, slurm_job_id: int) -> JobRecord | None:
        with self.db.session() as session:
            row = session.scalar(
                select(Job).where(Job.cluster == cluster, Job.slurm_job_id == slurm_job_id)
            )
            return None if row is None else JobRecord.of(row)

    def get_job(self, job_id: int) -> JobRecord:
        """The job with catalog id `job_id`; CatalogNotFound if there is none."""
        with self.db.session() as session:
            return JobRecord.of(_job(session, job_id))

    def jobs_for_sync(self, cluster: str, slurm_job_ids: Iterable[int]) -> dict[int, JobRecord]:
        """The jobs a sync must look at, by Slurm job id, in one query: those Slurm
        listed and every job still open (pending, running or requeued) in the catalog."""
        open_states = [JobState.PENDING, JobState.RUNNING, JobState.REQUEUED]
        ids = list(slurm_job_ids)
        with self.db.session() as session:
            rows = session.scalars(
                select(Job).where(
                    Job.cluster == cluster,
                    or_(Job.slurm_job_id.in_(ids), Job.state.in_(open_states)),
                )
            )
            return {row.slurm_job_id: JobRecord.of(row) for row in rows}

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

    def record_requeue(self, job_id: int, detail: str, now: datetime) -> JobRecord:
        """Count one restart and record a `requeued` event, together."""
        with self.db.session(write=True) as session:
            # Incremented in SQL, so two writers cannot lose one of the counts.
            _changed_one(
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(restart_count=Job.restart_count + 1, updated_at=now)
                ),
                f"job {job_id}",
            )
            session.add(
                Event(job_id=job_id, kind=EventKind.REQUEUED, detail=detail, created_at=now)
            )
            return JobRecord.of(_job(session, job_id))

    def _update_job(self, job_id: int, values: dict[str, Any]) -> JobRecord:
        with self.db.session(write=True) as session:
            _changed_one(
                session.execute(update(Job).where(Job.id == job_id).values(**values)),
                f"job {job_id}",
            )
            return JobRecord.of(_job(session, job_id))

    def job_summaries(
        self, *, cluster: str | None = None, user_name: str | None = None
    ) -> list[JobSummary]:
        """Every tracked job with its checkpoint totals, in one query, by cluster and job id."""
        valid = Checkpoint.state == CheckpointState.VALID
        totals = (
            select(
                Checkpoint.job_id,
                func.max(Checkpoint.completed_at).label("last_valid_at"),
                func.count().label("valid_count"),
                func.sum(Checkpoint.total_bytes).label("valid_bytes"),
            )
            .where(valid)
            .group_by(Checkpoint.job_id)
            .subquery()
        )
        # Plain columns, not ORM objects: building 10,000 mapped instances costs
        # several times what the query itself does.
        columns = [getattr(Job, name) for name in _JOB_FIELDS]
        query = (
            select(*columns, totals.c.last_valid_at, totals.c.valid_count, totals.c.valid_bytes)
            .outerjoin(totals, totals.c.job_id == Job.id)
            .order_by(Job.cluster, Job.slurm_job_id)
        )
        if cluster is not None:
            query = query.where(Job.cluster == cluster)
        if user_name is not None:
            query = query.where(Job.user_name == user_name)
        n = len(columns)
        with self.db.session() as session:
            summaries = []
            for row in session.execute(query):
                job = JobRecord(*row[:n])
                last_valid_at, valid_count, valid_bytes = row[n:]
                summaries.append(
                    JobSummary(
                        job=job,
                        last_valid_at=last_valid_at,
                        valid_count=valid_count or 0,
                        valid_bytes=int(valid_bytes or 0),
                        restart_count=job.restart_count,
                    )
                )
            return summaries

    def checkpoint_activity(
        self, *, cluster: str | None = None, user_name: str | None = None
    ) -> dict[int, CheckpointActivity]:
        """Per catalog job id, in one query: the newest request and the newest failure.

        A failure is any checkpoint with an error, whatever retention made of it
        since (FAILED, OBSOLETE, DELETED). Jobs without checkpoints are absent.
        """
        newest = (
            select(
                Checkpoint.job_id,
                func.max(Checkpoint.created_at).label("last_requested_at"),
                func.max(case((Checkpoint.error.is_not(None), Checkpoint.seq))).label("failed_seq"),
            )
            .group_by(Checkpoint.job_id)
            .subquery()
        )
        failed = aliased(Checkpoint)
        query = (
            select(
                newest.c.job_id,
                newest.c.last_requested_at,
                failed.completed_at,
                failed.seq,
                failed.error,
            )
            .join(Job, Job.id == newest.c.job_id)
            .outerjoin(
                failed, and_(failed.job_id == newest.c.job_id, failed.seq == newest.c.failed_seq)
            )
        )
        if cluster is not None:
            query = query.where(Job.cluster == cluster)
        if user_name is not None:
            query = query.where(Job.user_name == user_name)
        with self.db.session() as session:
            return {
                job_id: CheckpointActivity(requested, failed_at, seq, error)
                for job_id, requested, failed_at, seq, error in session.execute(query)
            }

    # Events

    def record_event(
        self,
        job_id: int,
        kind: EventKind,
        now: datetime,
        *,
        detail: str = "",
        checkpoint_seq: int | None = None,
    ) -> EventRecord:
        with self.db.session(write=True) as session:
            row = Event(
                job_id=job_id,
                kind=kind,
                detail=detail,
                checkpoint_seq=checkpoint_seq,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return EventRecord.of(row)

    def events(self, job_id: int, *, limit: int = 100) -> list[EventRecord]:
        """The job's newest events first."""
        with self.db.session() as session:
            rows = session.scalars(
                select(Event)
                .where(Event.job_id == job_id)
                .order_by(Event.created_at.desc(), Event.id.desc())
                .limit(limit)
            )
            return [EventRecord.of(row) for row in rows]

    def count_events(self, job_id: int, kind: EventKind, detail_prefix: str = "") -> int:
        """How many events of `kind` the job has whose detail starts with `detail_prefix`."""
        with self.db.session() as session:
            query = select(func.count(Event.id)).where(Event.job_id == job_id, Event.kind == kind)
            if detail_prefix:
                query = query.where(Event.detail.startswith(detail_prefix, autoescape=True))
            return int(session.scalar(query) or 0)

    # Checkpoints

    def request_checkpoint(self, job_id: int, now: datetime) -> CheckpointRecord:
        """Record the job's next checkpoint as REQUESTED, before the request is sent.

        Raises CatalogNotFound for an unknown job, CatalogConflict when a dump of
        this job is already in flight (from this or another service instance).
        """
        with self.db.session(write=True) as session:
            # The job row lock makes concurrent requests for one job take turns.
            job = _job(session, job_id, lock=True)
            in_flight = session.scalar(
                select(Checkpoint.seq).where(
                    Checkpoint.job_id == job_id, Checkpoint.state == CheckpointState.REQUESTED
                )
            )
            if in_flight is not None:
                raise CatalogConflict(f"job {job_id} already has checkpoint {in_flight} in flight")
            last = session.scalar(
                select(func.max(Checkpoint.seq)).where(Checkpoint.job_id == job_id)
            )
            row = Checkpoint(
                job_id=job_id,
                seq=(last or 0) + 1,
                state=CheckpointState.REQUESTED,
                job_restart_count=job.restart_count,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return CheckpointRecord.of(row)

    def get_checkpoint(self, checkpoint_id: int) -> CheckpointRecord:
        with self.db.session() as session:
            return CheckpointRecord.of(_checkpoint(session, checkpoint_id))

    def mark_valid(self, checkpoint_id: int, result: DumpResult, now: datetime) -> CheckpointRecord:
        """REQUESTED -> VALID with the verified dump's facts; also FAILED -> VALID for
        a request failed at its deadline whose image arrived and verified after all."""
        return self._transition(
            checkpoint_id,
            CheckpointState.VALID,
            {
                "store_path": result.store_path,
                "total_bytes": result.total_bytes,
                "file_count": result.file_count,
                "dump_seconds": result.dump_seconds,
                "freeze_seconds": result.freeze_seconds,
                "criu_version": result.criu_version,
                "manifest_checksum": result.manifest_checksum,
                "error": None,
                "completed_at": now,
            },
        )

    def adopt_checkpoint(
        self, job_id: int, seq: int, result: DumpResult, now: datetime
    ) -> CheckpointRecord:
        """Record as VALID a verified checkpoint the service did not request: the
        launcher's final one on Slurm's own signal (preemption, time limit).

        Raises CatalogConflict when the job already has checkpoint `seq`.
        """
        with self.db.session(write=True) as session:
            job = _job(session, job_id, lock=True)
            taken = session.scalar(
                select(Checkpoint.id).where(Checkpoint.job_id == job_id, Checkpoint.seq == seq)
            )
            if taken is not None:
                raise CatalogConflict(f"job {job_id} already has checkpoint {seq}")
            row = Checkpoint(
                job_id=job_id,
                seq=seq,
                state=CheckpointState.VALID,
                store_path=result.store_path,
                total_bytes=result.total_bytes,
                file_count=result.file_count,
                dump_seconds=result.dump_seconds,
                freeze_seconds=result.freeze_seconds,
                criu_version=result.criu_version,
                manifest_checksum=result.manifest_checksum,
                job_restart_count=job.restart_count,
                created_at=now,
                completed_at=now,
            )
            session.add(row)
            session.flush()
            return CheckpointRecord.of(row)

    def mark_failed(self, checkpoint_id: int, error: str, now: datetime) -> CheckpointRecord:
        """REQUESTED -> FAILED, with the reason."""
        return self._transition(
            checkpoint_id, CheckpointState.FAILED, {"error": error, "completed_at": now}
        )

    def mark_obsolete(self, checkpoint_id: int) -> CheckpointRecord:
        """VALID or FAILED -> OBSOLETE: its files may now be deleted."""
        return self._transition(checkpoint_id, CheckpointState.OBSOLETE, {})

    def mark_deleted(self, checkpoint_id: int) -> CheckpointRecord:
        """OBSOLETE -> DELETED, once its files are gone."""
        return self._transition(checkpoint_id, CheckpointState.DELETED, {})

    def _transition(
        self, checkpoint_id: int, target: CheckpointState, values: dict[str, Any]
    ) -> CheckpointRecord:
        with self.db.session(write=True) as session:
            row = _checkpoint(session, checkpoint_id, lock=True)
            current = row.state
            check_transition(current, target, checkpoint_id=checkpoint_id)
            _compare_and_set(session, checkpoint_id, current, target, values)
            session.refresh(row)
            return CheckpointRecord.of(row)

    def apply_retention(
        self, job_id: int, policy: RetentionPolicy, now: datetime
    ) -> RetentionPlan[CheckpointRecord]:
        """Plan retention for one job and mark the obsolete checkpoints, together."""
        with self.db.session(write=True) as session:
            _job(session, job_id, lock=True)
            rows = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))
            decided = plan([CheckpointRecord.of(row) for row in rows], policy, now)
            for checkpoint in decided.obsolete:
                check_transition(
                    checkpoint.state, CheckpointState.OBSOLETE, checkpoint_id=checkpoint.id
                )
                _compare_and_set(
                    session, checkpoint.id, checkpoint.state, CheckpointState.OBSOLETE, {}
                )
            return decided

    def newest_valid(self, job_id: int) -> CheckpointRecord | None:
        """The image a restart should try first, or None."""
        with self.db.session() as session:
            row = session.scalar(_valid(job_id).limit(1))
            return None if row is None else CheckpointRecord.of(row)

    def valid_checkpoints(self, job_id: int) -> list[CheckpointRecord]:
        """The job's valid checkpoints, newest first: the restore fallback order."""
        with self.db.session() as session:
            return [CheckpointRecord.of(row) for row in session.scalars(_valid(job_id))]

    def checkpoints(
        self, job_id: int, *, states: Iterable[CheckpointState] | None = None
    ) -> list[CheckpointRecord]:
        """The job's checkpoints (optionally only in `states`), newest first."""
        query = select(Checkpoint).where(Checkpoint.job_id == job_id)
        if states is not None:
            query = query.where(Checkpoint.state.in_(list(states)))
        with self.db.session() as session:
            rows = session.scalars(query.order_by(Checkpoint.seq.desc()))
            return [CheckpointRecord.of(row) for row in rows]

    def jobs_with_checkpoints_in(self, state: CheckpointState) -> list[JobRecord]:
        """Every job that has a checkpoint in `state` (recovery: OBSOLETE ones)."""
        with self.db.session() as session:
            rows = session.scalars(
                select(Job).where(
                    Job.id.in_(select(Checkpoint.job_id).where(Checkpoint.state == state))
                )
            )
            return [JobRecord.of(row) for row in rows]

    def stuck_requests(self, older_than: timedelta, now: datetime) -> list[CheckpointRecord]:
        """Checkpoints still REQUESTED `older_than` after they were requested, oldest first."""
        cutoff = now - older_than
        with self.db.session() as session:
            rows = session.scalars(
                select(Checkpoint)
                .where(
                    and_(
                        Checkpoint.state == CheckpointState.REQUESTED,
                        Checkpoint.created_at < cutoff,
                    )
                )
                .order_by(Checkpoint.created_at, Checkpoint.id)
            )
            return [CheckpointRecord.of(row) for row in rows]

    # Admin actions: ckpt-admin records them, the service claims and carries them out.

    def submit_action(
        self,
        kind: ActionKind,
        *,
        cluster: str,
        requested_by: str,
        now: datetime,
        slurm_job_id: int | None = None,
        node: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> ActionRecord:
        """Record an admin request as PENDING for the cluster's service.

        Raises CatalogConflict when the kind's target is missing (a job for
        checkpoint and requeue, a node for drain), CatalogError when `options`
        is not JSON.
        """
        with self.db.session(write=True) as session:
            row = Action(
                kind=kind,
                cluster=cluster,
                slurm_job_id=slurm_job_id,
                node=node,
                options=dict(options or {}),
                state=ActionState.PENDING,
                detail="",
                progress="",
                requested_by=requested_by,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            return ActionRecord.of(row)

    def get_action(self, action_id: int) -> ActionRecord:
        """The action with id `action_id`; CatalogNotFound if there is none."""
        with self.db.session() as session:
            return ActionRecord.of(_action(session, action_id))

    def claim_actions(self, cluster: str, now: datetime, limit: int = 20) -> list[ActionRecord]:
        """Take up to `limit` PENDING actions of `cluster`, oldest first, and make them RUNNING.

        Each action is claimed by exactly one caller: the rows are locked (SKIP
        LOCKED on PostgreSQL, so a second claimer takes others instead of
        waiting; SQLite serialises writers) and each move is a compare-and-set.
        """
        with self.db.session(write=True) as session:
            pending = session.scalars(
                select(Action.id)
                .where(Action.cluster == cluster, Action.state == ActionState.PENDING)
                .order_by(Action.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            claimed = [
                action_id
                for action_id in pending
                if _set_action_state(
                    session,
                    action_id,
                    ActionState.PENDING,
                    {
                        "state": ActionState.RUNNING,
                        "updated_at": now,
                    },
                )
            ]
            rows = session.scalars(select(Action).where(Action.id.in_(claimed)).order_by(Action.id))
            return [ActionRecord.of(row) for row in rows]

    def update_action(
        self,
        action_id: int,
        now: datetime,
        *,
        state: ActionState | None = None,
        detail: str | None = None,
        progress: str | None = None,
    ) -> ActionRecord:
        """Record progress or the end of an action; None leaves a field as it is.

        Raises CatalogNotFound, IllegalTransition (a move the state machine does not
        allow, or any change to a DONE or FAILED action), CatalogConflict (another
        writer changed its state meanwhile).
        """
        with self.db.session(write=True) as session:
            row = _action(session, action_id, lock=True)
            current = row.state
            target = state or current
            values: dict[str, Any] = {"updated_at": now}
            # A finished action is history too: a stale runner must not rewrite it.
            if target != current or not ACTION_TRANSITIONS[current]:
                check_action_transition(current, target, action_id=action_id)
                values["state"] = target
            if detail is not None:
                values["detail"] = detail
            if progress is not None:
                values["progress"] = progress
            if not _set_action_state(session, action_id, current, values):
                raise CatalogConflict(
                    f"action {action_id} changed state while it was being updated: "
                    "another writer got there first"
                )
            session.refresh(row)
            return ActionRecord.of(row)

    def open_actions(
        self,
        cluster: str,
        *,
        requested_by: str | None = None,
        slurm_job_id: int | None = None,
        kind: ActionKind | None = None,
    ) -> list[ActionRecord]:
        """The cluster's PENDING and RUNNING actions (of one requester, job or kind),
        oldest first."""
        query = select(Action).where(
            Action.cluster == cluster,
            Action.state.in_([ActionState.PENDING, ActionState.RUNNING]),
        )
        if requested_by is not None:
            query = query.where(Action.requested_by == requested_by)
        if slurm_job_id is not None:
            query = query.where(Action.slurm_job_id == slurm_job_id)
        if kind is not None:
            query = query.where(Action.kind == kind)
        with self.db.session() as session:
            return [ActionRecord.of(row) for row in session.scalars(query.order_by(Action.id))]

    def running_actions(self, cluster: str) -> list[ActionRecord]:
        """The cluster's RUNNING actions, oldest first (what a restarted service finds)."""
        with self.db.session() as session:
            rows = session.scalars(
                select(Action)
                .where(Action.cluster == cluster, Action.state == ActionState.RUNNING)
                .order_by(Action.id)
            )
            return [ActionRecord.of(row) for row in rows]


def _action(session: Session, action_id: int, *, lock: bool = False) -> Action:
    query = select(Action).where(Action.id == action_id)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise CatalogNotFound(f"action {action_id} is not in the catalog")
    return row


def _set_action_state(
    session: Session, action_id: int, current: ActionState, values: dict[str, Any]
) -> bool:
    """Compare-and-set: apply `values` only if the action is still `current`."""
    result = session.execute(
        update(Action)
        .where(Action.id == action_id, Action.state == current)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def _valid(job_id: int) -> Select[tuple[Checkpoint]]:
    return (
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.state == CheckpointState.VALID)
        .order_by(Checkpoint.seq.desc())
    )


def _job(session: Session, job_id: int, *, lock: bool = False) -> Job:
    query = select(Job).where(Job.id == job_id)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise CatalogNotFound(f"job {job_id} is not in the catalog")
    return row


def _checkpoint(session: Session, checkpoint_id: int, *, lock: bool = False) -> Checkpoint:
    query = select(Checkpoint).where(Checkpoint.id == checkpoint_id)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise CatalogNotFound(f"checkpoint {checkpoint_id} is not in the catalog")
    return row


def _compare_and_set(
    session: Session,
    checkpoint_id: int,
    current: CheckpointState,
    target: CheckpointState,
    values: dict[str, Any],
) -> None:
    result = session.execute(
        update(Checkpoint)
        .where(Checkpoint.id == checkpoint_id, Checkpoint.state == current)
        .values(state=target, **values)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise CatalogConflict(
            f"checkpoint {checkpoint_id} changed state while it was becoming {target}: "
            "another writer got there first"
        )


def _changed_one(result: Any, what: str) -> None:
    if cast(CursorResult[Any], result).rowcount != 1:
        raise CatalogNotFound(f"{what} is not in the catalog")
