"""Retention plans: examples, then properties over random histories (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_ckpt.db.retention import RetentionPlan, RetentionPolicy, plan
from slurm_ckpt.db.states import CheckpointState

S = CheckpointState
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Cp:
    seq: int
    state: CheckpointState
    created_at: datetime
    completed_at: datetime | None


def history(*states: S, hours_apart: int = 1) -> list[Cp]:
    """Checkpoints seq 1.. with the newest (last) finished one hour before NOW."""
    n = len(states)
    out = []
    for seq, state in enumerate(states, start=1):
        at = NOW - timedelta(hours=hours_apart * (n - seq + 1))
        out.append(Cp(seq, state, at, None if state == S.REQUESTED else at))
    return out


def seqs(items: tuple[Cp, ...]) -> list[int]:
    return [c.seq for c in items]


def test_keep_last() -> None:
    result = plan(history(*[S.VALID] * 5), RetentionPolicy(keep_last=2), NOW)
    assert (seqs(result.kept), seqs(result.obsolete)) == ([5, 4], [3, 2, 1])


def test_keep_within_counts_from_completion() -> None:
    cps = history(*[S.VALID] * 5)
    result = plan(cps, RetentionPolicy(keep_within=timedelta(hours=3)), NOW)
    assert seqs(result.kept) == [5, 4, 3]  # finished 1, 2 and exactly 3 hours ago


def test_rules_add_up() -> None:
    cps = history(*[S.VALID] * 6)
    policy = RetentionPolicy(keep_last=1, keep_within=timedelta(hours=2), minimum=3)
    assert seqs(plan(cps, policy, NOW).kept) == [6, 5, 4]
    policy = RetentionPolicy(keep_last=4, keep_within=timedelta(hours=2))
    assert seqs(plan(cps, policy, NOW).kept) == [6, 5, 4, 3]


def test_no_rule_keeps_every_valid_one_and_still_drops_failed() -> None:
    result = plan(history(S.VALID, S.FAILED, S.VALID), RetentionPolicy(), NOW)
    assert (seqs(result.kept), seqs(result.obsolete)) == ([3, 1], [2])


def test_newest_valid_survives_even_when_old() -> None:
    cps = history(S.VALID, S.VALID, S.FAILED, S.FAILED, hours_apart=100)
    result = plan(cps, RetentionPolicy(keep_within=timedelta(hours=1)), NOW)
    assert (seqs(result.kept), seqs(result.obsolete)) == ([2], [4, 3, 1])


def test_requested_kept_and_decided_left_out() -> None:
    cps = history(S.DELETED, S.OBSOLETE, S.VALID, S.VALID, S.REQUESTED)
    result = plan(cps, RetentionPolicy(keep_last=1), NOW)
    assert (seqs(result.kept), seqs(result.obsolete)) == ([5, 4], [3])


@pytest.mark.parametrize(
    "policy",
    [
        {"keep_last": 0},
        {"keep_within": timedelta(0)},
        {"keep_within": timedelta(seconds=-1)},
        {"minimum": 0},
    ],
)
def test_bad_policies_are_refused(policy: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(**policy)  # type: ignore[arg-type]


# Properties

states = st.sampled_from(list(S))
policies = st.builds(
    RetentionPolicy,
    keep_last=st.none() | st.integers(1, 8),
    keep_within=st.none() | st.integers(1, 60 * 24 * 10).map(lambda m: timedelta(minutes=m)),
    minimum=st.integers(1, 5),
)


@st.composite
def histories(draw: st.DrawFn) -> list[Cp]:
    """A job's checkpoints in any order, with unique seqs and any completion times."""
    n = draw(st.integers(0, 25))
    seq_list = draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n, unique=True))
    out = []
    for seq in seq_list:
        state = draw(states)
        created = NOW - timedelta(minutes=draw(st.integers(-60, 60 * 24 * 20)))
        done = created + timedelta(minutes=draw(st.integers(0, 120)))
        out.append(Cp(seq, state, created, None if state == S.REQUESTED else done))
    return out


def newest_valid(cps: list[Cp]) -> Cp | None:
    valid = [c for c in cps if c.state == S.VALID]
    return max(valid, key=lambda c: c.seq) if valid else None


def check_partition(cps: list[Cp], result: RetentionPlan[Cp]) -> None:
    undecided = [c for c in cps if c.state not in (S.OBSOLETE, S.DELETED)]
    assert sorted(seqs(result.kept) + seqs(result.obsolete)) == sorted(c.seq for c in undecided)
    assert seqs(result.kept) == sorted(seqs(result.kept), reverse=True)
    assert seqs(result.obsolete) == sorted(seqs(result.obsolete), reverse=True)


@given(histories(), policies)
def test_property_plan_partitions_the_undecided(cps: list[Cp], policy: RetentionPolicy) -> None:
    check_partition(cps, plan(cps, policy, NOW))


@given(histories(), policies)
def test_property_newest_valid_is_never_obsolete(cps: list[Cp], policy: RetentionPolicy) -> None:
    newest = newest_valid(cps)
    result = plan(cps, policy, NOW)
    if newest is not None:
        assert newest in result.kept
        assert newest not in result.obsolete


@given(histories(), policies)
def test_property_failed_always_obsolete_requested_never(
    cps: list[Cp], policy: RetentionPolicy
) -> None:
    result = plan(cps, policy, NOW)
    assert all(c in result.obsolete for c in cps if c.state == S.FAILED)
    assert all(c in result.kept for c in cps if c.state == S.REQUESTED)
    assert all(c.state in (S.VALID, S.FAILED) for c in result.obsolete)


@given(histories(), policies)
def test_property_a_valid_checkpoint_goes_only_when_no_rule_keeps_it(
    cps: list[Cp], policy: RetentionPolicy
) -> None:
    result = plan(cps, policy, NOW)
    valid = sorted((c for c in cps if c.state == S.VALID), key=lambda c: c.seq, reverse=True)
    rank = {c.seq: i for i, c in enumerate(valid)}
    assert len([c for c in result.kept if c.state == S.VALID]) >= min(policy.minimum, len(valid))
    for c in valid:
        finished = c.completed_at or c.created_at
        kept_by_rule = (
            rank[c.seq] < policy.minimum
            or (policy.keep_last is None and policy.keep_within is None)
            or (policy.keep_last is not None and rank[c.seq] < policy.keep_last)
            or (policy.keep_within is not None and NOW - finished <= policy.keep_within)
        )
        assert (c in result.kept) == kept_by_rule


@given(histories(), policies, st.randoms(use_true_random=False))
def test_property_order_of_input_does_not_matter(
    cps: list[Cp], policy: RetentionPolicy, rnd: object
) -> None:
    shuffled = list(cps)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert plan(shuffled, policy, NOW) == plan(cps, policy, NOW)


@given(histories(), policies, st.integers(1, 5))
def test_property_a_longer_keep_last_never_drops_more(
    cps: list[Cp], policy: RetentionPolicy, extra: int
) -> None:
    base = policy.keep_last or 1
    fewer = RetentionPolicy(base, policy.keep_within, policy.minimum)
    more = RetentionPolicy(base + extra, policy.keep_within, policy.minimum)
    assert set(seqs(plan(cps, more, NOW).obsolete)) <= set(seqs(plan(cps, fewer, NOW).obsolete))


@given(histories(), policies)
def test_property_applying_a_plan_again_changes_nothing(
    cps: list[Cp], policy: RetentionPolicy
) -> None:
    first = plan(cps, policy, NOW)
    gone = {c.seq for c in first.obsolete}
    after = [
        Cp(c.seq, S.OBSOLETE, c.created_at, c.completed_at) if c.seq in gone else c for c in cps
    ]
    again = plan(after, policy, NOW)
    assert again.obsolete == ()
    assert again.kept == first.kept
