"""Named states of jobs and checkpoints, event and checkpoint kinds, and the state machines.

Pure: the in-job launcher imports it, so it must never import SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from slurm_ckpt.errors import IllegalTransition


class CheckpointState(StrEnum):
    REQUESTED = "REQUESTED"  # recorded before the dump request is sent
    VALID = "VALID"  # image and manifest verified
    FAILED = "FAILED"  # dump failed, or no result by the deadline
    OBSOLETE = "OBSOLETE"  # retention gave it up; its files may be deleted
    DELETED = "DELETED"  # its files are gone; the row stays as history


class CheckpointKind(StrEnum):
    """Why a checkpoint was taken."""

    PERIODIC = "periodic"  # the job's own schedule
    # The last one before a stop: the launcher's own on Slurm's signal (time limit,
    # preemption), or the service's before a walltime-chaining requeue.
    FINAL = "final"
    ADMIN = "admin"  # `ckpt-admin checkpoint`, `requeue` or `drain`


# FAILED -> OBSOLETE lets retention hand a failed dump's leftovers to deletion
# through the same path as a VALID image. FAILED -> VALID is for one case only
# (Catalog.mark_valid from the late watch): a request failed at its deadline whose image then
# arrived and verified; the alternative, a committed image the catalog calls
# FAILED, is one retention would delete while a restart restores it.
ALLOWED_TRANSITIONS: Mapping[CheckpointState, frozenset[CheckpointState]] = {
    CheckpointState.REQUESTED: frozenset({CheckpointState.VALID, CheckpointState.FAILED}),
    CheckpointState.VALID: frozenset({CheckpointState.OBSOLETE}),
    CheckpointState.FAILED: frozenset({CheckpointState.OBSOLETE, CheckpointState.VALID}),
    CheckpointState.OBSOLETE: frozenset({CheckpointState.DELETED}),
    CheckpointState.DELETED: frozenset(),
}


def check_transition(
    current: CheckpointState, target: CheckpointState, *, checkpoint_id: int | None = None
) -> None:
    """Return if `current -> target` is allowed; raise IllegalTransition otherwise."""
    allowed = ALLOWED_TRANSITIONS[current]
    if target in allowed:
        return
    which = f"checkpoint {checkpoint_id}" if checkpoint_id is not None else "a checkpoint"
    names = ", ".join(sorted(allowed)) or "none, it is final"
    raise IllegalTransition(
        f"{which} is {current}: it cannot become {target} (allowed: {names})",
        current=current.value,
        target=target.value,
        checkpoint_id=checkpoint_id,
    )


class JobState(StrEnum):
    """A tracked job's state as the service last saw it in Slurm."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    REQUEUED = "REQUEUED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# States in which a job may still run (again).
OPEN_JOB_STATES = frozenset({JobState.PENDING, JobState.RUNNING, JobState.REQUEUED})


class EventKind(StrEnum):
    REQUEUED = "requeued"
    RESTORED = "restored"
    FELL_BACK = "fell_back"  # restored from an older image after a newer one failed
    FRESH_START = "fresh_start"
    RESTORE_FAILED = "restore_failed"
    REQUEUE_REFUSED = "requeue_refused"
    UNCHECKPOINTABLE = "uncheckpointable"  # the service will not checkpoint it, and why
    LATE_CHECKPOINT = "late_checkpoint"  # a result after the deadline: FAILED became VALID


class ActionKind(StrEnum):
    """An admin request the service carries out (`ckpt-admin checkpoint|requeue|drain|gc`)."""

    CHECKPOINT = "checkpoint"
    REQUEUE = "requeue"
    DRAIN = "drain"
    GC = "gc"


class ActionState(StrEnum):
    PENDING = "PENDING"  # recorded by ckpt-admin, not yet claimed by a service
    RUNNING = "RUNNING"  # claimed by exactly one service instance
    DONE = "DONE"
    FAILED = "FAILED"


# A claimed action runs to an end; an end is final. PENDING -> FAILED lets a
# request be refused before it runs.
ACTION_TRANSITIONS: Mapping[ActionState, frozenset[ActionState]] = {
    ActionState.PENDING: frozenset({ActionState.RUNNING, ActionState.FAILED}),
    ActionState.RUNNING: frozenset({ActionState.DONE, ActionState.FAILED}),
    ActionState.DONE: frozenset(),
    ActionState.FAILED: frozenset(),
}


def check_action_transition(current: ActionState, target: ActionState, *, action_id: int) -> None:
    """Return if an action may go from `current` to `target`; raise IllegalTransition otherwise."""
    if target in ACTION_TRANSITIONS[current]:
        return
    allowed = ", ".join(sorted(ACTION_TRANSITIONS[current])) or "none, it is final"
    raise IllegalTransition(
        f"action {action_id} is {current}: it cannot become {target} (allowed: {allowed})",
        current=current.value,
        target=target.value,
    )
