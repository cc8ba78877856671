"""The service's decisions as pure pieces: admission, failure backoff, requeue,
walltime chaining, due times and jitter.

Nothing here does I/O or reads the clock: `now` (timezone-aware UTC) is passed
in, so the scheduler can be rebuilt from the catalog and tested without waiting.
`Admission` and `FailureTracker` hold state and are safe to share between
threads; everything else is immutable.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from slurm_ckpt.slurm import states


def _require_aware(name: str, value: datetime) -> None:
    # A naive time mixed with aware ones raises deep inside a comparison; say it here.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {value!r}")


def _require_interval(interval: int) -> None:
    if interval <= 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval}")


class Admission:
    """Slots for checkpoints in flight, capped cluster-wide and per image store.

    A key holds at most one slot, so a job is never checkpointed twice at once.
    """

    def __init__(self, max_total: int, max_per_store: int) -> None:
        if max_total < 1:
            raise ValueError(f"max_total must be >= 1, got {max_total}")
        if max_per_store < 1:
            raise ValueError(f"max_per_store must be >= 1, got {max_per_store}")
        self._max_total = max_total
        self._max_per_store = max_per_store
        self._lock = threading.Lock()
        self._holders: dict[int, str] = {}  # key -> store
        self._per_store: Counter[str] = Counter()

    def try_acquire(self, key: int, store: str) -> bool:
        """Take a slot for `key` on `store`; False when a cap is reached or `key` holds one."""
        with self._lock:
            if key in self._holders:
                return False
            if len(self._holders) >= self._max_total:
                return False
            if self._per_store[store] >= self._max_per_store:
                return False
            self._holders[key] = store
            self._per_store[store] += 1
            return True

    def release(self, key: int) -> None:
        """Give back `key`'s slot; releasing a key without one does nothing."""
        with self._lock:
            store = self._holders.pop(key, None)
            if store is None:
                return
            self._per_store[store] -= 1
            if self._per_store[store] <= 0:
                del self._per_store[store]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._holders)

    def holding(self, key: int) -> bool:
        with self._lock:
            return key in self._holders


@dataclass(frozen=True)
class FailureState:
    count: int  # consecutive failures so far
    retry_at: datetime  # no new attempt before this
    give_up: bool  # count reached give_up_after: mark the job uncheckpointable


class FailureTracker:
    """Consecutive checkpoint failures per job key, with exponential backoff.

    The n-th failure in a row waits base * 2**(n-1), at most `maximum`, so a job
    whose dumps keep failing is never retried in a storm.
    """

    def __init__(self, base: timedelta, maximum: timedelta, give_up_after: int) -> None:
        if base <= timedelta(0):
            raise ValueError(f"base must be positive, got {base}")
        if maximum < base:
            raise ValueError(f"maximum ({maximum}) must be >= base ({base})")
        if give_up_after < 1:
            raise ValueError(f"give_up_after must be >= 1, got {give_up_after}")
        self._base = base
        self._maximum = maximum
        self._give_up_after = give_up_after
        self._lock = threading.Lock()
        self._failures: dict[int, FailureState] = {}

    def delay(self, count: int) -> timedelta:
        """The backoff after `count` consecutive failures (count >= 1)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        exponent = count - 1
        # Compare before multiplying: a long failure streak would overflow timedelta.
        if exponent >= 62 or (1 << exponent) >= self._maximum / self._base:
            return self._maximum
        return min(self._base * (1 << exponent), self._maximum)

    def failed(self, key: int, now: datetime) -> FailureState:
        """Record one more failure of `key` at `now` and return the new state."""
        _require_aware("now", now)
        with self._lock:
            previous = self._failures.get(key)
            count = previous.count + 1 if previous else 1
            state = FailureState(
                count=count,
                retry_at=now + self.delay(count),
                give_up=count >= self._give_up_after,
            )
            self._failures[key] = state
            return state

    def succeeded(self, key: int) -> None:
        """A checkpoint of `key` worked: the streak is over."""
        with self._lock:
            self._failures.pop(key, None)

    def retry_at(self, key: int) -> datetime | None:
        """When `key` may be tried again; None when it has no failure streak."""
        with self._lock:
            state = self._failures.get(key)
            return state.retry_at if state else None

    def forget(self, key: int) -> None:
        """Drop everything about `key` (the job is gone)."""
        with self._lock:
            self._failures.pop(key, None)


@dataclass(frozen=True)
class RequeueDecision:
    requeue: bool
    reason: str  # one line, for the event log


@dataclass(frozen=True)
class RequeuePolicy:
    """Whether a job that ended should be requeued to resume from its image."""

    causes: frozenset[str] = states.DEFAULT_REQUEUE_CAUSES  # long Slurm job states
    max_restarts: int = 3

    def __post_init__(self) -> None:
        unknown = sorted(set(self.causes) - states.REQUEUE_CAUSES)
        if unknown:
            raise ValueError(
                f"requeue causes must be among {', '.join(sorted(states.REQUEUE_CAUSES))}, "
                f"got {', '.join(unknown)}"
            )
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")

    def decide(self, state: str, restarts: int, has_valid_image: bool) -> RequeueDecision:
        """Decide for a job that ended in `state` after `restarts` restarts."""
        if restarts < 0:
            raise ValueError(f"restarts must be >= 0, got {restarts}")
        # sacct writes "CANCELLED by 1000"; the first word is the state.
        words = state.split()
        name = words[0].upper() if words else ""
        if name == "CANCELLED":
            return RequeueDecision(False, "cancelled by a user or an admin: never requeued")
        if name == "COMPLETED":
            return RequeueDecision(False, "completed: nothing to requeue")
        if name not in self.causes:
            shown = ", ".join(sorted(self.causes)) or "none"
            return RequeueDecision(
                False, f"{name or 'empty state'} is not a requeue cause (causes: {shown})"
            )
        if restarts >= self.max_restarts:
            return RequeueDecision(False, f"{name}: restart limit {self.max_restarts} reached")
        start = (
            "resumes from its newest valid image"
            if has_valid_image
            else "no valid image, starts from the beginning"
        )
        return RequeueDecision(
            True, f"{name}: requeued (restart {restarts + 1} of {self.max_restarts}), {start}"
        )


# The detail of every requeue event walltime chaining records starts with this:
# counting those events gives a job's chained runs after the service restarts.
CHAINED_REQUEUE = "walltime chaining, run"


@dataclass(frozen=True)
class ChainDecision:
    act: bool  # take a final checkpoint now and requeue the job afterwards
    reason: str  # one line


@dataclass(frozen=True)
class WalltimeChaining:
    """Let a job run past its time limit: a last checkpoint, then a requeue."""

    enabled: bool
    max_chained_runs: int
    margin: timedelta  # the final checkpoint is due this long before the limit

    def __post_init__(self) -> None:
        if self.max_chained_runs < 0:
            raise ValueError(f"max_chained_runs must be >= 0, got {self.max_chained_runs}")
        if self.margin <= timedelta(0):
            raise ValueError(f"margin must be positive, got {self.margin}")

    def due(
        self,
        *,
        running: bool,
        limit_at: datetime | None,
        now: datetime,
        chained_runs: int,
        opted_out: bool,
    ) -> ChainDecision:
        """Whether the job's final checkpoint before its time limit is due at `now`."""
        _require_aware("now", now)
        if not self.enabled:
            return ChainDecision(False, "walltime chaining is disabled")
        if opted_out:
            return ChainDecision(False, "the job opted out of walltime chaining")
        if not running:
            return ChainDecision(False, "the job is not running")
        if limit_at is None:
            return ChainDecision(False, "the job has no time limit")
        _require_aware("limit_at", limit_at)
        left = limit_at - now
        if left > self.margin:
            return ChainDecision(
                False, f"time limit in {_seconds(left)}, margin {_seconds(self.margin)}"
            )
        # Checked last so the limit is reported only when a chain step would otherwise happen.
        if chained_runs >= self.max_chained_runs:
            return ChainDecision(False, f"chain limit {self.max_chained_runs} reached")
        return ChainDecision(
            True,
            f"time limit in {_seconds(left)}: final checkpoint, then requeue "
            f"(chained run {chained_runs + 1} of {self.max_chained_runs})",
        )


def _seconds(delta: timedelta) -> str:
    return f"{max(delta.total_seconds(), 0.0):g}s"


def first_due(started_at: datetime, interval: int) -> datetime:
    """The first checkpoint of a job: one interval after it started."""
    _require_aware("started_at", started_at)
    _require_interval(interval)
    return started_at + timedelta(seconds=interval)


def next_due(
    last_request_at: datetime | None, started_at: datetime, interval: int, now: datetime
) -> datetime:
    """One interval after the last request (or the start); `now` when that is past."""
    _require_aware("started_at", started_at)
    _require_aware("now", now)
    _require_interval(interval)
    if last_request_at is None:
        due = first_due(started_at, interval)
    else:
        _require_aware("last_request_at", last_request_at)
        due = last_request_at + timedelta(seconds=interval)
    return max(due, now)


def jitter_seconds(key: int, interval: int, fraction: float = 0.1, cap: float = 60.0) -> float:
    """A spread in [0, min(interval * fraction, cap)) fixed by `key`.

    Derived from a hash of the key, not from a random generator, so the same
    job gets the same offset after a service restart while many jobs with one
    interval are spread out.
    """
    _require_interval(interval)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if not (math.isfinite(cap) and cap >= 0.0):
        raise ValueError(f"cap must be a finite number >= 0, got {cap}")
    span = min(interval * fraction, cap)
    if span <= 0.0:
        return 0.0
    digest = hashlib.blake2b(str(key).encode("ascii"), digest_size=8).digest()
    # 53 bits: exactly representable, so unit < 1.0 holds after the division.
    unit = (int.from_bytes(digest, "big") >> 11) / float(1 << 53)
    return min(unit * span, math.nextafter(span, 0.0))
