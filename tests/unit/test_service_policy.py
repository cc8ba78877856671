from __future__ import annotations

import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_ckpt.service.policy import (
    Admission,
    FailureTracker,
    RequeuePolicy,
    WalltimeChaining,
    first_due,
    jitter_seconds,
    next_due,
)
from slurm_ckpt.slurm import states
from slurm_ckpt.slurm.base import JobInfo

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
intervals = st.integers(min_value=1, max_value=30 * 86400)


# Admission


def test_admission_total_cap() -> None:
    a = Admission(max_total=2, max_per_store=5)
    assert a.try_acquire(1, "s1")
    assert a.try_acquire(2, "s2")
    assert not a.try_acquire(3, "s3")
    assert a.in_flight == 2
    a.release(1)
    assert a.try_acquire(3, "s3")


def test_admission_per_store_cap() -> None:
    a = Admission(max_total=10, max_per_store=2)
    assert a.try_acquire(1, "s1")
    assert a.try_acquire(2, "s1")
    assert not a.try_acquire(3, "s1")
    # Another store still has room.
    assert a.try_acquire(3, "s2")
    a.release(2)
    assert a.try_acquire(4, "s1")
    assert a.in_flight == 3


def test_admission_refuses_a_second_slot_for_one_key() -> None:
    a = Admission(max_total=10, max_per_store=10)
    assert a.try_acquire(7, "s1")
    assert not a.try_acquire(7, "s1")
    assert not a.try_acquire(7, "s2")
    assert a.in_flight == 1
    assert a.holding(7)
    assert not a.holding(8)


def test_admission_release_is_idempotent() -> None:
    a = Admission(max_total=1, max_per_store=1)
    a.release(5)  # never held
    assert a.try_acquire(5, "s")
    a.release(5)
    a.release(5)
    assert a.in_flight == 0
    assert not a.holding(5)
    # A double release must not free more than the one slot.
    assert a.try_acquire(6, "s")
    assert not a.try_acquire(7, "s")


@pytest.mark.parametrize(("total", "per_store"), [(0, 1), (1, 0), (-1, 3)])
def test_admission_rejects_bad_caps(total: int, per_store: int) -> None:
    with pytest.raises(ValueError):
        Admission(total, per_store)


def test_admission_concurrent_acquire_never_exceeds_caps() -> None:
    a = Admission(max_total=5, max_per_store=2)
    stores = ["s0", "s1", "s2", "s3"]
    lock = threading.Lock()
    held: dict[int, str] = {}
    violations: list[str] = []
    barrier = threading.Barrier(8)

    def worker(worker_id: int) -> None:
        barrier.wait()
        for i in range(400):
            key = (i * 13 + worker_id) % 40
            store = stores[key % len(stores)]
            if a.try_acquire(key, store):
                with lock:
                    if key in held:
                        violations.append(f"key {key} admitted twice")
                    held[key] = store
                    per_store = sum(1 for s in held.values() if s == store)
                    if len(held) > 5 or per_store > 2:
                        violations.append(
                            f"caps exceeded: {len(held)} total, {per_store} on {store}"
                        )
                with lock:
                    del held[key]
                    # Released inside the lock so `held` never lags behind the admission.
                    a.release(key)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert violations == []
    assert a.in_flight == 0


def test_admission_simultaneous_acquires_respect_the_caps() -> None:
    # Many threads released at once for the same few slots; a tiny switch interval makes
    # a check-then-take race show up if the lock is missing.
    a = Admission(max_total=3, max_per_store=2)
    threads_n, rounds = 12, 150
    barrier = threading.Barrier(threads_n)
    results: list[list[bool]] = [[False] * threads_n for _ in range(rounds)]

    def worker(n: int) -> None:
        for r in range(rounds):
            barrier.wait()
            results[r][n] = a.try_acquire(r * threads_n + n, "s1" if n % 2 else "s2")
            barrier.wait()
            a.release(r * threads_n + n)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    for r, granted in enumerate(results):
        on_s1, on_s2 = granted[1::2], granted[0::2]
        assert sum(granted) == 3, f"round {r}: {sum(granted)} slots granted"
        assert sum(on_s1) <= 2 and sum(on_s2) <= 2, f"round {r}: store cap exceeded"
    assert a.in_flight == 0


# FailureTracker


def tracker(give_up_after: int = 5) -> FailureTracker:
    return FailureTracker(timedelta(minutes=5), timedelta(hours=2), give_up_after)


def test_backoff_doubles_then_caps() -> None:
    t = tracker(give_up_after=100)
    delays = [t.failed(1, T0).retry_at - T0 for _ in range(8)]
    minutes = [d / timedelta(minutes=1) for d in delays]
    assert minutes == [5, 10, 20, 40, 80, 120, 120, 120]


def test_failure_counts_and_give_up() -> None:
    t = tracker(give_up_after=3)
    states_seen = [t.failed(1, T0) for _ in range(4)]
    assert [s.count for s in states_seen] == [1, 2, 3, 4]
    assert [s.give_up for s in states_seen] == [False, False, True, True]


def test_give_up_after_one() -> None:
    assert tracker(give_up_after=1).failed(1, T0).give_up


def test_success_resets_the_streak() -> None:
    t = tracker(give_up_after=3)
    t.failed(1, T0)
    t.failed(1, T0)
    t.succeeded(1)
    assert t.retry_at(1) is None
    again = t.failed(1, T0)
    assert again.count == 1
    assert again.retry_at == T0 + timedelta(minutes=5)
    assert not again.give_up


def test_keys_are_independent_and_forget() -> None:
    t = tracker()
    t.failed(1, T0)
    t.failed(1, T0)
    assert t.failed(2, T0).count == 1
    assert t.retry_at(1) == T0 + timedelta(minutes=10)
    assert t.retry_at(2) == T0 + timedelta(minutes=5)
    assert t.retry_at(3) is None
    t.forget(1)
    t.forget(1)
    assert t.retry_at(1) is None
    assert t.retry_at(2) is not None


def test_retry_at_follows_the_latest_failure_time() -> None:
    t = tracker()
    t.failed(1, T0)
    later = T0 + timedelta(hours=1)
    assert t.failed(1, later).retry_at == later + timedelta(minutes=10)


def test_long_streak_does_not_overflow() -> None:
    t = tracker(give_up_after=1)
    assert t.delay(10_000) == timedelta(hours=2)


def test_failed_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tracker().failed(1, datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("base", "maximum", "give_up"),
    [
        (timedelta(0), timedelta(hours=1), 3),
        (timedelta(minutes=10), timedelta(minutes=5), 3),
        (timedelta(minutes=1), timedelta(minutes=5), 0),
    ],
)
def test_tracker_rejects_bad_settings(base: timedelta, maximum: timedelta, give_up: int) -> None:
    with pytest.raises(ValueError):
        FailureTracker(base, maximum, give_up)


@given(
    base_s=st.integers(min_value=1, max_value=3600),
    extra_s=st.integers(min_value=0, max_value=86400),
    count=st.integers(min_value=1, max_value=200),
)
def test_backoff_matches_the_formula(base_s: int, extra_s: int, count: int) -> None:
    base, maximum = timedelta(seconds=base_s), timedelta(seconds=base_s + extra_s)
    t = FailureTracker(base, maximum, give_up_after=1000)
    for _ in range(count):
        state = t.failed(9, T0)
    assert state.count == count
    # 2**20 s is past any maximum drawn here; capping the exponent keeps timedelta in range.
    assert state.retry_at == T0 + min(base * 2 ** min(count - 1, 20), maximum)


def test_tracker_is_thread_safe() -> None:
    t = FailureTracker(timedelta(seconds=1), timedelta(hours=1), give_up_after=10_000)

    def worker() -> None:
        for _ in range(500):
            t.failed(1, T0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.failed(1, T0).count == 8 * 500 + 1


# RequeuePolicy


def test_default_causes() -> None:
    policy = RequeuePolicy(max_restarts=3)
    assert policy.causes == frozenset({"FAILED", "OUT_OF_MEMORY", "NODE_FAIL"})
    assert "TIMEOUT" not in policy.causes
    # One definition, in slurm.states, which the configuration reads too.
    assert policy.causes is states.DEFAULT_REQUEUE_CAUSES
    assert policy.causes <= states.REQUEUE_CAUSES


@pytest.mark.parametrize("state", sorted(states.DEFAULT_REQUEUE_CAUSES))
def test_requeue_for_each_default_cause(state: str) -> None:
    d = RequeuePolicy(max_restarts=3).decide(state, 0, True)
    assert d.requeue
    assert state in d.reason
    assert "restart 1 of 3" in d.reason
    assert "valid image" in d.reason


@pytest.mark.parametrize("state", ["CANCELLED", "CANCELLED by 1000", "cancelled"])
def test_never_after_a_cancel(state: str) -> None:
    everything = RequeuePolicy(causes=states.REQUEUE_CAUSES, max_restarts=100)
    d = everything.decide(state, 0, True)
    assert not d.requeue
    assert "cancelled" in d.reason


def test_never_after_completion() -> None:
    d = RequeuePolicy(causes=states.REQUEUE_CAUSES, max_restarts=100).decide("COMPLETED", 0, True)
    assert not d.requeue
    assert "completed" in d.reason


@pytest.mark.parametrize("state", ["TIMEOUT", "PREEMPTED", "RUNNING", "PENDING", "BOGUS", ""])
def test_states_outside_the_causes_are_not_requeued(state: str) -> None:
    d = RequeuePolicy(max_restarts=3).decide(state, 0, True)
    assert not d.requeue
    assert "not a requeue cause" in d.reason


def test_timeout_when_configured() -> None:
    d = RequeuePolicy(causes=frozenset({"TIMEOUT"}), max_restarts=1).decide("TIMEOUT", 0, True)
    assert d.requeue


@pytest.mark.parametrize(("restarts", "requeue"), [(0, True), (2, True), (3, False), (9, False)])
def test_restart_limit(restarts: int, requeue: bool) -> None:
    d = RequeuePolicy(max_restarts=3).decide("NODE_FAIL", restarts, True)
    assert d.requeue is requeue
    if not requeue:
        assert "restart limit 3 reached" in d.reason


def test_zero_restarts_allowed_never_requeues() -> None:
    d = RequeuePolicy(max_restarts=0).decide("FAILED", 0, True)
    assert not d.requeue
    assert "restart limit 0 reached" in d.reason


def test_no_valid_image_still_requeues_and_says_so() -> None:
    with_image = RequeuePolicy(max_restarts=3).decide("FAILED", 1, True)
    without = RequeuePolicy(max_restarts=3).decide("FAILED", 1, False)
    assert without.requeue
    assert "no valid image" in without.reason
    assert "no valid image" not in with_image.reason


@given(
    state=st.sampled_from(sorted(states.JOB_STATES)),
    restarts=st.integers(min_value=0, max_value=20),
    has_image=st.booleans(),
    max_restarts=st.integers(min_value=0, max_value=10),
)
def test_requeue_decisions_follow_the_rules(
    state: str, restarts: int, has_image: bool, max_restarts: int
) -> None:
    policy = RequeuePolicy(max_restarts=max_restarts)
    d = policy.decide(state, restarts, has_image)
    expected = state in policy.causes and restarts < max_restarts
    assert d.requeue is expected
    assert d.reason
    assert "\n" not in d.reason


@pytest.mark.parametrize("causes", [{"CANCELLED"}, {"COMPLETED"}, {"RUNNING"}, {"failed"}])
def test_policy_rejects_bad_causes(causes: set[str]) -> None:
    with pytest.raises(ValueError, match="requeue causes"):
        RequeuePolicy(causes=frozenset(causes), max_restarts=3)


def test_policy_rejects_negative_values() -> None:
    with pytest.raises(ValueError):
        RequeuePolicy(max_restarts=-1)
    with pytest.raises(ValueError):
        RequeuePolicy(max_restarts=3).decide("FAILED", -1, True)


# WalltimeChaining

END = T0 + timedelta(minutes=1)  # one minute left at T0, inside a two-minute margin


def chaining(enabled: bool = True, max_runs: int = 5) -> WalltimeChaining:
    return WalltimeChaining(enabled=enabled, max_chained_runs=max_runs, margin=timedelta(minutes=2))


def due(w: WalltimeChaining, **changes: object) -> tuple[bool, str]:
    args: dict[str, object] = {
        "running": True,
        "limit_at": END,
        "now": T0,
        "chained_runs": 0,
        "opted_out": False,
    }
    args.update(changes)
    d = w.due(**args)  # type: ignore[arg-type]
    assert d.reason and "\n" not in d.reason
    return d.act, d.reason


def test_chaining_acts_inside_the_margin() -> None:
    act, reason = due(chaining())
    assert act
    assert "chained run 1 of 5" in reason


def test_chaining_acts_exactly_at_the_margin_and_after_the_end() -> None:
    assert due(chaining(), limit_at=T0 + timedelta(minutes=2))[0]
    assert due(chaining(), limit_at=T0 - timedelta(seconds=30))[0]


def test_chaining_waits_outside_the_margin() -> None:
    act, reason = due(chaining(), limit_at=T0 + timedelta(minutes=2, seconds=1))
    assert not act
    assert "time limit in" in reason


@pytest.mark.parametrize(
    ("w", "changes", "words"),
    [
        (chaining(enabled=False), {}, "disabled"),
        (chaining(), {"opted_out": True}, "opted out"),
        (chaining(), {"running": False}, "not running"),
        (chaining(), {"limit_at": None}, "no time limit"),
        (chaining(max_runs=5), {"chained_runs": 5}, "chain limit 5 reached"),
        (chaining(max_runs=5), {"chained_runs": 7}, "chain limit 5 reached"),
        (chaining(max_runs=0), {}, "chain limit 0 reached"),
    ],
)
def test_chaining_refusals(w: WalltimeChaining, changes: dict[str, object], words: str) -> None:
    act, reason = due(w, **changes)
    assert not act
    assert words in reason


def test_chaining_below_the_limit_acts() -> None:
    act, reason = due(chaining(max_runs=5), chained_runs=4)
    assert act
    assert "5 of 5" in reason


def test_chain_limit_is_not_reported_far_from_the_time_limit() -> None:
    # Otherwise every poll would log "chain limit reached" for hours.
    act, reason = due(chaining(max_runs=1), chained_runs=1, limit_at=T0 + timedelta(hours=3))
    assert not act
    assert "chain limit" not in reason


def test_chaining_rejects_bad_settings_and_naive_times() -> None:
    with pytest.raises(ValueError):
        WalltimeChaining(enabled=True, max_chained_runs=-1, margin=timedelta(minutes=1))
    with pytest.raises(ValueError):
        WalltimeChaining(enabled=True, max_chained_runs=1, margin=timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        due(chaining(), now=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        due(chaining(), limit_at=datetime(2025, 1, 1))


# Due times


def test_first_due_is_one_interval_after_start() -> None:
    assert first_due(T0, 1800) == T0 + timedelta(minutes=30)


def test_next_due_from_start_and_from_last_request() -> None:
    now = T0 + timedelta(minutes=10)
    assert next_due(None, T0, 1800, now) == T0 + timedelta(minutes=30)
    last = T0 + timedelta(minutes=35)
    assert next_due(last, T0, 1800, last) == last + timedelta(minutes=30)


def test_next_due_when_overdue_is_now() -> None:
    now = T0 + timedelta(hours=5)
    assert next_due(None, T0, 1800, now) == now
    assert next_due(T0 + timedelta(hours=1), T0, 1800, now) == now


@pytest.mark.parametrize("interval", [0, -60])
def test_due_times_reject_bad_intervals(interval: int) -> None:
    with pytest.raises(ValueError, match="interval"):
        first_due(T0, interval)
    with pytest.raises(ValueError, match="interval"):
        next_due(None, T0, interval, T0)


def test_due_times_reject_naive_times() -> None:
    naive = datetime(2025, 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        first_due(naive, 60)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_due(naive, T0, 60, T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_due(None, T0, 60, naive)


@given(
    started=aware_times,
    last_offset=st.one_of(st.none(), st.integers(min_value=0, max_value=10 * 86400)),
    now_offset=st.integers(min_value=0, max_value=20 * 86400),
    interval=intervals,
)
def test_next_due_is_never_in_the_past(
    started: datetime, last_offset: int | None, now_offset: int, interval: int
) -> None:
    last = None if last_offset is None else started + timedelta(seconds=last_offset)
    now = started + timedelta(seconds=now_offset)
    result = next_due(last, started, interval, now)
    assert result >= now
    base = started if last is None else last
    # Never later than one interval after the reference, unless that is already past.
    assert result == max(base + timedelta(seconds=interval), now)


# Jitter


def test_jitter_is_deterministic() -> None:
    assert [jitter_seconds(k, 1800) for k in range(50)] == [
        jitter_seconds(k, 1800) for k in range(50)
    ]


def test_jitter_is_pinned() -> None:
    # Fixed values: a per-process hash (like hash() of a str) or a changed formula would
    # reshuffle every job's schedule after a service restart or an upgrade.
    assert jitter_seconds(12345, 1800) == pytest.approx(27.2683366929825, abs=1e-9)
    assert jitter_seconds(1, 600) == pytest.approx(57.8871989756441, abs=1e-9)
    assert jitter_seconds(-7, 86400) == pytest.approx(23.585723426921593, abs=1e-9)


def test_jitter_spreads_many_jobs() -> None:
    values = [jitter_seconds(key, 1800) for key in range(1, 1001)]
    assert len(set(values)) >= 990
    assert all(0.0 <= v < 60.0 for v in values)
    # Spread across the range, not bunched at one end: every tenth of it is used.
    deciles = {int(v // 6.0) for v in values}
    assert deciles == set(range(10))


def test_jitter_bounds_follow_fraction_and_cap() -> None:
    assert max(jitter_seconds(k, 100) for k in range(500)) < 10.0  # 10% of 100 s
    assert max(jitter_seconds(k, 100, fraction=0.5) for k in range(500)) > 10.0
    assert max(jitter_seconds(k, 86400, cap=5.0) for k in range(500)) < 5.0


def test_jitter_zero_span() -> None:
    assert jitter_seconds(7, 600, fraction=0.0) == 0.0
    assert jitter_seconds(7, 600, cap=0.0) == 0.0


@pytest.mark.parametrize(
    ("interval", "fraction", "cap"),
    [(0, 0.1, 60.0), (60, -0.1, 60.0), (60, 1.5, 60.0), (60, 0.1, -1.0), (60, 0.1, float("nan"))],
)
def test_jitter_rejects_bad_arguments(interval: int, fraction: float, cap: float) -> None:
    with pytest.raises(ValueError):
        jitter_seconds(1, interval, fraction, cap)


@given(
    key=st.integers(min_value=-(2**63), max_value=2**63),
    interval=intervals,
    fraction=st.floats(min_value=0.0, max_value=1.0),
    cap=st.floats(min_value=0.0, max_value=3600.0),
)
def test_jitter_within_bounds(key: int, interval: int, fraction: float, cap: float) -> None:
    value = jitter_seconds(key, interval, fraction, cap)
    span = min(interval * fraction, cap)
    assert value >= 0.0
    assert value < span or value == span == 0.0


def test_the_time_limit_is_the_runs_start_plus_its_limit_not_slurms_end_time() -> None:
    # A preempted job's end time moves to the end of its grace time: no time limit.
    preempted = JobInfo(
        job_id=7,
        state="RUNNING",
        user="u",
        uid=1000,
        batch_host="node1",
        node_list="node1",
        start_time=T0 - timedelta(hours=1),
        time_limit=None,
        end_time=T0 + timedelta(seconds=15),
        restarts=0,
        interval=60,
    )
    assert preempted.limit_at is None
    act, reason = due(chaining(), limit_at=preempted.limit_at)
    assert not act and "no time limit" in reason
    limited = replace(preempted, time_limit=3600 + 60, end_time=T0 + timedelta(seconds=15))
    assert limited.limit_at == T0 + timedelta(seconds=60)
    assert due(chaining(), limit_at=limited.limit_at)[0]
