"""Whose jobs the service checkpoints: members of the CRIU copy's group. The decision with
a fake user and group database, its cache, and a non-member's job marked
uncheckpointable, with an event, when the service starts tracking it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.db.states import EventKind
from slurm_ckpt.service import main
from slurm_ckpt.service.eligibility import Accounts, CriuGroup, not_a_member
from slurm_ckpt.slurm.fake import FakeSlurm

from .service_fakes import FakeWorld

BINARY = Path("/opt/slurm-ckpt/bin/criu-unpriv")
GROUP, GID = "slurm-ckpt-criu", 995
USERS = {2901: ("ckpt-alice", 2901), 2903: ("ckpt-carol", 2903), 3000: ("dave", GID)}
MEMBERS = {"ckpt-alice"}


class FakeAccounts:
    """A user and group database that counts how often it is asked."""

    def __init__(self, groups: dict[str, int] | None = None) -> None:
        self.groups = {GROUP: GID} if groups is None else groups
        self.asked = 0

    def user(self, uid: int) -> tuple[str, int]:
        self.asked += 1
        return USERS[uid]

    def group(self, name: str) -> int:
        return self.groups[name]

    def groups_of(self, name: str, primary: int) -> list[int]:
        return [primary, GID] if name in MEMBERS else [primary]

    def accounts(self) -> Accounts:
        return Accounts(self.user, self.group, self.groups_of)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def criu_group(db: FakeAccounts, clock: Clock | None = None) -> CriuGroup:
    return CriuGroup(GROUP, BINARY, ttl=60, accounts=db.accounts(), clock=clock or Clock())


def test_members_root_and_a_primary_group_may_be_checkpointed() -> None:
    check = criu_group(FakeAccounts())
    assert check.refusal(2901) is None  # supplementary member
    assert check.refusal(3000) is None  # the group is their primary group
    assert check.refusal(0) is None


def test_a_non_member_is_refused_with_the_reason() -> None:
    reason = criu_group(FakeAccounts()).refusal(2903)
    assert reason == not_a_member("ckpt-carol", GROUP, BINARY)
    assert reason == (
        f"user ckpt-carol is not in group {GROUP} that may run {BINARY}: "
        "the job runs without checkpoints; an admin adds them"
    )


def test_what_this_host_cannot_resolve_is_left_to_the_launcher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_group = criu_group(FakeAccounts(groups={}))
    with caplog.at_level(logging.WARNING, logger="slurm_ckpt.service.eligibility"):
        assert no_group.refusal(2903) is None
        assert no_group.refusal(2901) is None
    # Said once, not once per job.
    assert len(caplog.records) == 1
    assert f"group {GROUP} does not exist" in caplog.records[0].getMessage()
    assert criu_group(FakeAccounts()).refusal(4242) is None  # no user entry here


def test_answers_are_cached_briefly() -> None:
    db, clock = FakeAccounts(), Clock()
    check = criu_group(db, clock)
    for _ in range(100):
        check.refusal(2903)
    assert db.asked == 1
    clock.now += 61
    check.refusal(2903)
    assert db.asked == 2


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FakeWorld]:
    with FakeWorld.open(tmp_path / "store", FakeSlurm()) as world:
        yield world


def test_a_non_members_new_job_is_marked_uncheckpointable_with_an_event(
    world: FakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    reason = not_a_member("ckpt-carol", GROUP, BINARY)
    world.service.syncer.criu_refusal = lambda uid: reason if uid == 2903 else None
    world.job(201, uid=2903, user="ckpt-carol")
    world.job(202)
    with caplog.at_level(logging.WARNING, logger="slurm_ckpt.service.sync"):
        world.service.sync()
        world.service.sync()

    carol = world.tracked(201)
    assert carol.uncheckpointable_reason == reason
    events = world.catalog.events(carol.id)
    assert [(e.kind, e.detail) for e in events] == [(EventKind.UNCHECKPOINTABLE, reason)]
    assert world.tracked(202).uncheckpointable_reason is None
    # Logged once, when the job is first tracked.
    assert [r.getMessage() for r in caplog.records] == [f"job 201: uncheckpointable: {reason}"]
    # Its periodic checkpoints are never requested.
    world.service.schedule.checkpoint_now(carol.id)
    assert world.catalog.checkpoints(carol.id) == []


def test_the_service_checks_the_group_only_where_jobs_run_criu() -> None:
    settings = load_settings(env={"SLURM_CKPT_CRIU_GROUP": "site-criu"})
    refusal = main._criu_refusal(settings)
    assert isinstance(getattr(refusal, "__self__", None), CriuGroup)
    assert refusal.__self__.group == "site-criu"  # type: ignore[attr-defined]
    fake = load_settings(env={"SLURM_CKPT_LAUNCHER_DUMPER": "fake"})
    assert main._criu_refusal(fake)(2903) is None
