"""The catalog's tables as typed SQLAlchemy models.

Every datetime is timezone-aware UTC in Python; `UTCDateTime` refuses naive
values on the way in and makes SQLite's naive values aware on the way out.
The schema changes only through db/migrations/.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from slurm_ckpt.db.states import (
    ActionKind,
    ActionState,
    CheckpointKind,
    CheckpointState,
    EventKind,
    JobState,
)

# Stable constraint names, so migrations can name what they alter on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

E = TypeVar("E", bound=StrEnum)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the catalog stores aware UTC")
        value = value.astimezone(UTC)
        # SQLite keeps no offset; all stored values are UTC, so drop it explicitly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EnumText(TypeDecorator[E]):
    """A StrEnum stored as its value in a VARCHAR (a CHECK constraint lists the values)."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__(length=16)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class JSONText(TypeDecorator[dict[str, Any]]):
    """A JSON object stored as text: the same on SQLite and PostgreSQL, readable in a dump."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        return json.dumps(value, sort_keys=True, allow_nan=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any] | None:
        if value is None:
            return None
        loaded = json.loads(value)
        if not isinstance(loaded, dict):
            raise TypeError(f"expected a JSON object in the database, got {value!r}")
        return loaded


def _one_of(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(member.value) for member in enum)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """A Slurm job that asked for checkpoints."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String(64))
    slurm_job_id: Mapped[int] = mapped_column(BigInteger)
    user_name: Mapped[str] = mapped_column(String(64))
    uid: Mapped[int] = mapped_column(Integer)
    interval_seconds: Mapped[int] = mapped_column(Integer)
    state: Mapped[JobState] = mapped_column(EnumText(JobState))
    batch_host: Mapped[str | None] = mapped_column(String(255))
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    uncheckpointable_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Requeues made by walltime chaining, a subset of restart_count (migration 0005).
    chained_runs: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    __table_args__ = (
        UniqueConstraint("cluster", "slurm_job_id"),
        CheckConstraint(_one_of("state", JobState), name="state"),
        CheckConstraint("interval_seconds > 0", name="interval_positive"),
        CheckConstraint("restart_count >= 0", name="restart_count_not_negative"),
        CheckConstraint("chained_runs >= 0", name="chained_runs_not_negative"),
        CheckConstraint("slurm_job_id > 0", name="slurm_job_id_positive"),
        Index(None, "user_name"),
    )


class Checkpoint(Base):
    """One image of one job: requested, then valid or failed, then obsolete and deleted."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[CheckpointState] = mapped_column(EnumText(CheckpointState))
    store_path: Mapped[str | None] = mapped_column(Text)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    file_count: Mapped[int | None] = mapped_column(Integer)
    dump_seconds: Mapped[float | None] = mapped_column(Float)
    freeze_seconds: Mapped[float | None] = mapped_column(Float)
    criu_version: Mapped[str | None] = mapped_column(String(32))
    # "<algorithm>:<hex>" of the manifest file, so the store may change algorithms.
    manifest_checksum: Mapped[str | None] = mapped_column(String(160))
    error: Mapped[str | None] = mapped_column(Text)
    job_restart_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The server default gives rows older than migration 0005 their kind.
    kind: Mapped[CheckpointKind] = mapped_column(
        EnumText(CheckpointKind),
        default=CheckpointKind.PERIODIC,
        server_default=CheckpointKind.PERIODIC.value,
    )

    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        CheckConstraint(_one_of("state", CheckpointState), name="state"),
        CheckConstraint(_one_of("kind", CheckpointKind), name="kind"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint("total_bytes IS NULL OR total_bytes >= 0", name="total_bytes_not_negative"),
        CheckConstraint("file_count IS NULL OR file_count >= 0", name="file_count_not_negative"),
        CheckConstraint("state = 'REQUESTED' OR completed_at IS NOT NULL", name="completed_at_set"),
        # A VALID row without these could not be restored or verified.
        CheckConstraint(
            "state <> 'VALID' OR (store_path IS NOT NULL AND manifest_checksum IS NOT NULL "
            "AND total_bytes IS NOT NULL AND file_count IS NOT NULL)",
            name="valid_is_complete",
        ),
        # At most one dump in flight per job, whichever service instance asked for it.
        Index(
            "uq_checkpoints_job_id_requested",
            "job_id",
            unique=True,
            sqlite_where=text("state = 'REQUESTED'"),
            postgresql_where=text("state = 'REQUESTED'"),
        ),
        Index(None, "job_id", "state", "seq"),
        Index(None, "state", "created_at"),
    )


class Event(Base):
    """Something that happened to a job: a requeue, a restore and its outcome, a refusal."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[EventKind] = mapped_column(EnumText(EventKind))
    checkpoint_seq: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(_one_of("kind", EventKind), name="kind"),
        Index(None, "job_id", "created_at"),
    )


class Action(Base):
    """An admin request (checkpoint, requeue, drain, gc) that the service carries out."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[ActionKind] = mapped_column(EnumText(ActionKind))
    cluster: Mapped[str] = mapped_column(String(64))
    slurm_job_id: Mapped[int | None] = mapped_column(BigInteger)
    node: Mapped[str | None] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(JSONText)
    state: Mapped[ActionState] = mapped_column(EnumText(ActionState))
    detail: Mapped[str] = mapped_column(Text)
    progress: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(_one_of("kind", ActionKind), name="kind"),
        CheckConstraint(_one_of("state", ActionState), name="state"),
        CheckConstraint("slurm_job_id IS NULL OR slurm_job_id > 0", name="slurm_job_id_positive"),
        # What each kind acts on; the service never has to guess.
        CheckConstraint(
            "kind NOT IN ('checkpoint', 'requeue') OR slurm_job_id IS NOT NULL",
            name="job_actions_name_a_job",
        ),
        CheckConstraint("kind <> 'drain' OR node IS NOT NULL", name="drain_names_a_node"),
        Index(None, "cluster", "state"),
    )
