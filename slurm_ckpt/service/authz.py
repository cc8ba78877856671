"""Who may see and do what through ckpt-admin: the service's decision.

Root and the members of the service's `[admin] group` see every job and may
do everything. Anyone else sees only their own jobs (the job's uid is theirs),
may checkpoint and verify them, and may follow the actions they asked for;
requeue, drain and `gc --yes` are for admins. The caller's uid comes from a
credential the service verified (MUNGE) or, for root on the service host,
from the process itself; group membership is looked up here, never taken from
the caller. Everything but `lookup_caller` is pure.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from slurm_ckpt.cli.errors import NotAllowed
from slurm_ckpt.db.catalog import ActionRecord, JobRecord


class Verb(StrEnum):
    """What a caller asks to do; the value is how messages name it."""

    SEE = "see"
    CHECKPOINT = "checkpoint"
    VERIFY = "verify"
    REQUEUE = "requeue"
    DRAIN = "drain"
    GC = "gc --yes"


# What anyone may do to their own jobs; everything else needs an admin.
OWNER_VERBS = frozenset({Verb.SEE, Verb.CHECKPOINT, Verb.VERIFY})


@dataclass(frozen=True)
class Caller:
    uid: int
    name: str  # the passwd name, or the uid as text when there is none
    is_admin: bool


ROOT = Caller(uid=0, name="root", is_admin=True)


def is_admin(uid: int, groups: Iterable[int], admin_gid: int | None) -> bool:
    """Root, or a member of the admin group (a group that does not exist has no members)."""
    return uid == 0 or (admin_gid is not None and admin_gid in set(groups))


def may_see(caller: Caller, job: JobRecord) -> bool:
    return caller.is_admin or job.uid == caller.uid


def may_follow(caller: Caller, action: ActionRecord) -> bool:
    """Admins follow every action, others those recorded with their verified name."""
    return caller.is_admin or action.requested_by == caller.name


def require(caller: Caller, verb: Verb, admin_group: str, job: JobRecord | None = None) -> None:
    """Raise NotAllowed unless `caller` may `verb` (on `job`, for a verb on a job)."""
    if caller.is_admin:
        return
    if verb not in OWNER_VERBS:
        raise NotAllowed(f"{verb} needs root or membership in the group {admin_group}")
    if job is not None and job.uid != caller.uid:
        raise NotAllowed(
            f"job {job.slurm_job_id} belongs to another user: you may {verb} your own jobs only"
        )


def require_user_filter(caller: Caller, user_name: str | None, admin_group: str) -> None:
    """A user may ask for their own jobs by name, never for someone else's."""
    if not caller.is_admin and user_name is not None and user_name != caller.name:
        raise NotAllowed(f"only root and the group {admin_group} may list other users' jobs")


def lookup_caller(uid: int, admin_group: str) -> Caller:
    """The caller with `uid`, its name and admin rights from this host's user and group
    databases (the groups of its passwd entry, as `id` shows them)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        # A uid without a passwd entry still owns its jobs, but belongs to no group.
        return Caller(uid=uid, name=str(uid), is_admin=uid == 0)
    try:
        admin_gid: int | None = grp.getgrnam(admin_group).gr_gid
    except KeyError:
        admin_gid = None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return Caller(uid=uid, name=entry.pw_name, is_admin=is_admin(uid, groups, admin_gid))
