"""What became of a checkpoint request: the words the service's modules share about one.

`Sent` answers an attempt to ask, `InFlight` is a request awaiting its result, and
`Outcome` is how one ended. Here, not in checkpoints.py, so that schedules, admin
actions, walltime chaining and metrics can name them without the Checkpointer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from slurm_ckpt.db.catalog import CheckpointRecord, JobRecord
from slurm_ckpt.db.states import CheckpointKind


class Sent(StrEnum):
    """What became of an attempt to request a checkpoint."""

    SENT = "sent"
    BACKING_OFF = "backing off"  # recent failures: not before the back-off ends
    ADMISSION_FULL = "admission full"  # too many dumps in flight: try again shortly
    IN_FLIGHT = "in flight"  # this job already has one
    FAILED = "failed"  # recorded as FAILED with the reason, or not requested (logged)


@dataclass(frozen=True)
class InFlight:
    job: JobRecord
    checkpoint: CheckpointRecord  # its kind says why it was asked for
    deadline: datetime


@dataclass(frozen=True)
class Outcome:
    """What became of one request, for metrics and callers."""

    job: JobRecord
    seq: int
    valid: bool
    detail: str
    total_bytes: int = 0
    dump_seconds: float = 0.0
    freeze_seconds: float = 0.0
    kind: CheckpointKind = CheckpointKind.PERIODIC
    # False when another instance (or this one before a crash) had completed it:
    # what follows a completion (a chained requeue) was done by whoever did.
    recorded: bool = True


def gone(flight: InFlight, running: dict[int, JobRecord]) -> str | None:
    """Why no launcher will answer `flight` any more, or None while one may."""
    job = running.get(flight.job.id)
    if job is None:
        return "the job stopped running before it answered"
    if job.restart_count != flight.checkpoint.job_restart_count:
        return f"the job was requeued (restart {job.restart_count}) before it answered"
    return None
