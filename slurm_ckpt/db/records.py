"""The frozen records the catalog returns, and the one constructor that builds them from rows.

Records, never ORM objects, leave the catalog, so nothing lazy-loads after the
session closed. A record's fields are named like the columns it copies.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from slurm_ckpt.db.states import (
    ActionKind,
    ActionState,
    CheckpointKind,
    CheckpointState,
    EventKind,
    JobState,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


@functools.cache
def field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    """The record's field names, in order (also the columns a query selects for it)."""
    return tuple(field.name for field in dataclasses.fields(cls))


def from_row(cls: type[R], row: object) -> R:
    """A `cls` record from an ORM object or a result row with attributes of its field names."""
    return cls(**{name: getattr(row, name) for name in field_names(cls)})


def columns(record: DataclassInstance) -> dict[str, Any]:
    """The record's fields by name: the columns it fills in (from_row's other way)."""
    return {name: getattr(record, name) for name in field_names(type(record))}


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
    # How many of the restarts were walltime chaining's requeues. Defaults like
    # the column, so records made by hand (tests, fakes) need not name it.
    chained_runs: int = 0


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
    kind: CheckpointKind = CheckpointKind.PERIODIC  # defaults like the column


@dataclass(frozen=True)
class EventRecord:
    id: int
    job_id: int
    kind: EventKind
    checkpoint_seq: int | None
    detail: str
    created_at: datetime


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

    def columns(self) -> dict[str, Any]:
        """The checkpoint columns this dump fills in."""
        return columns(self)
