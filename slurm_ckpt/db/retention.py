"""Retention as a pure plan: which checkpoints of one job to keep, which are obsolete.

A VALID checkpoint is kept when any rule keeps it (the newest `keep_last`, those
completed within `keep_within` of `now`, the newest `minimum`); with no
`keep_last` and no `keep_within` every valid one is kept. The newest valid
checkpoint is never obsolete; FAILED ones always are; REQUESTED ones are in
flight and kept. OBSOLETE and DELETED ones are already decided and left out.
Deleting files is a separate step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from slurm_ckpt.db.states import CheckpointState


class RetentionCandidate(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def state(self) -> CheckpointState: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def completed_at(self) -> datetime | None: ...


C = TypeVar("C", bound=RetentionCandidate)

_DECIDED = frozenset({CheckpointState.OBSOLETE, CheckpointState.DELETED})


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int | None = None  # the N newest valid checkpoints
    keep_within: timedelta | None = None  # valid checkpoints completed this recently
    minimum: int = 1  # never fewer valid checkpoints than this (while that many exist)

    def __post_init__(self) -> None:
        if self.keep_last is not None and self.keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {self.keep_last}")
        if self.keep_within is not None and self.keep_within <= timedelta(0):
            raise ValueError(f"keep_within must be positive, got {self.keep_within}")
        if self.minimum < 1:
            raise ValueError(
                f"minimum must be >= 1 (the newest valid is always kept), got {self.minimum}"
            )


@dataclass(frozen=True)
class RetentionPlan(Generic[C]):
    kept: tuple[C, ...]  # newest first
    obsolete: tuple[C, ...]  # newest first


def plan(checkpoints: Iterable[C], policy: RetentionPolicy, now: datetime) -> RetentionPlan[C]:
    """Split one job's checkpoints into kept and obsolete; pure, does no I/O."""
    undecided = [c for c in checkpoints if c.state not in _DECIDED]
    undecided.sort(key=lambda c: c.seq, reverse=True)
    valid = [c for c in undecided if c.state == CheckpointState.VALID]

    keep_seqs = {c.seq for c in valid[: policy.minimum]}
    if policy.keep_last is None and policy.keep_within is None:
        keep_seqs.update(c.seq for c in valid)
    if policy.keep_last is not None:
        keep_seqs.update(c.seq for c in valid[: policy.keep_last])
    if policy.keep_within is not None:
        cutoff = now - policy.keep_within
        keep_seqs.update(c.seq for c in valid if _finished(c) >= cutoff)

    kept: list[C] = []
    obsolete: list[C] = []
    for c in undecided:
        if c.state == CheckpointState.REQUESTED or (
            c.state == CheckpointState.VALID and c.seq in keep_seqs
        ):
            kept.append(c)
        else:
            obsolete.append(c)
    return RetentionPlan(kept=tuple(kept), obsolete=tuple(obsolete))


def _finished(checkpoint: RetentionCandidate) -> datetime:
    return checkpoint.completed_at or checkpoint.created_at
