"""Who may see and do what: the service's decisions, pure, and the lookup of a uid's
name and admin rights in this host's user and group databases."""

from __future__ import annotations

import grp
import os
import pwd
from datetime import UTC, datetime

import pytest

from slurm_ckpt.cli.errors import NotAllowed
from slurm_ckpt.db.catalog import ActionRecord, JobRecord
from slurm_ckpt.db.states import ActionKind, ActionState, JobState
from slurm_ckpt.service import authz
from slurm_ckpt.service.authz import ROOT, Caller, Verb

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GROUP = "slurm-ckpt-admin"
ALICE = Caller(2901, "ckpt-alice", is_admin=False)
BOB = Caller(2902, "ckpt-bob", is_admin=False)
ADMIN = Caller(3000, "operator", is_admin=True)


def job(uid: int, slurm_job_id: int = 7) -> JobRecord:
    return JobRecord(
        id=1,
        cluster="test",
        slurm_job_id=slurm_job_id,
        user_name="whoever",  # names are not what ownership is decided by
        uid=uid,
        interval_seconds=60,
        state=JobState.RUNNING,
        batch_host="node1",
        restart_count=0,
        uncheckpointable_reason=None,
        created_at=NOW,
        updated_at=NOW,
    )


def action(requested_by: str) -> ActionRecord:
    return ActionRecord(
        id=1,
        kind=ActionKind.CHECKPOINT,
        cluster="test",
        slurm_job_id=7,
        node=None,
        options={},
        state=ActionState.PENDING,
        detail="",
        progress="",
        requested_by=requested_by,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize("verb", list(Verb))
def test_root_and_admins_may_do_everything_to_any_job(verb: Verb) -> None:
    for caller in (ROOT, ADMIN):
        authz.require(caller, verb, GROUP, job(uid=ALICE.uid))
        assert authz.may_see(caller, job(uid=ALICE.uid))
        assert authz.may_follow(caller, action("ckpt-alice"))


@pytest.mark.parametrize("verb", [Verb.SEE, Verb.CHECKPOINT, Verb.VERIFY])
def test_an_owner_may_see_checkpoint_and_verify_their_own_job_only(verb: Verb) -> None:
    authz.require(ALICE, verb, GROUP, job(uid=ALICE.uid))
    with pytest.raises(NotAllowed, match=f"job 7 belongs to another user: you may {verb}"):
        authz.require(BOB, verb, GROUP, job(uid=ALICE.uid))


@pytest.mark.parametrize("verb", [Verb.REQUEUE, Verb.DRAIN, Verb.GC])
def test_requeue_drain_and_gc_are_for_admins_even_on_ones_own_job(verb: Verb) -> None:
    with pytest.raises(NotAllowed, match=f"{verb} needs root or membership in the group {GROUP}"):
        authz.require(ALICE, verb, GROUP, job(uid=ALICE.uid))


def test_ownership_is_the_uid_not_the_name() -> None:
    impostor = Caller(4000, "ckpt-alice", is_admin=False)
    assert not authz.may_see(impostor, job(uid=ALICE.uid))
    assert authz.may_see(ALICE, job(uid=ALICE.uid))


def test_users_follow_only_the_actions_recorded_with_their_name() -> None:
    assert authz.may_follow(ALICE, action("ckpt-alice"))
    assert not authz.may_follow(BOB, action("ckpt-alice"))


def test_users_may_filter_list_jobs_by_their_own_name_only() -> None:
    authz.require_user_filter(ALICE, None, GROUP)
    authz.require_user_filter(ALICE, "ckpt-alice", GROUP)
    authz.require_user_filter(ADMIN, "ckpt-alice", GROUP)
    with pytest.raises(NotAllowed, match="other users' jobs"):
        authz.require_user_filter(BOB, "ckpt-alice", GROUP)


def test_admin_is_root_or_a_member_of_a_group_that_exists() -> None:
    assert authz.is_admin(0, [], None)
    assert authz.is_admin(2901, [2901, 500], 500)
    assert not authz.is_admin(2901, [2901], 500)
    assert not authz.is_admin(2901, [2901], None)  # no such group: no members


def test_lookup_takes_groups_from_this_hosts_databases() -> None:
    me = pwd.getpwuid(os.getuid())
    primary = grp.getgrgid(me.pw_gid).gr_name
    assert authz.lookup_caller(me.pw_uid, primary) == Caller(me.pw_uid, me.pw_name, True)
    assert authz.lookup_caller(0, "no-such-group-here").is_admin
    if me.pw_uid != 0:
        assert not authz.lookup_caller(me.pw_uid, "no-such-group-here").is_admin


def test_a_uid_without_a_passwd_entry_is_named_by_its_number_and_no_admin() -> None:
    uid = 4_000_000_123
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    assert authz.lookup_caller(uid, grp.getgrgid(0).gr_name) == Caller(uid, str(uid), False)
