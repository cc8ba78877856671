"""Who is running `ckpt-admin`, and what they may see and do.

Root and members of the configured admin group (`[admin] group`) see every
job and may run every command; anyone else sees and acts on their own jobs
only (their uid is the job's uid), and only where the command allows users.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from slurm_ckpt.cli.errors import NotAllowed
from slurm_ckpt.db.catalog import JobRecord


@dataclass(frozen=True)
class Identity:
    uid: int
    name: str
    gids: frozenset[int]


@dataclass(frozen=True)
class Actor:
    uid: int
    name: str
    is_admin: bool

    def may_see(self, job: JobRecord) -> bool:
        return self.is_admin or job.uid == self.uid


def process_identity() -> Identity:
    """The effective user of this process and every group it holds."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)  # a uid without a passwd entry still owns its jobs
    return Identity(uid=uid, name=name, gids=frozenset({os.getegid(), *os.getgroups()}))


def actor_for(identity: Identity, admin_group: str) -> Actor:
    """Root, or a member of `admin_group` (a group that does not exist has no members)."""
    if identity.uid == 0:
        return Actor(identity.uid, identity.name, is_admin=True)
    try:
        gid = grp.getgrnam(admin_group).gr_gid
    except KeyError:
        return Actor(identity.uid, identity.name, is_admin=False)
    return Actor(identity.uid, identity.name, is_admin=gid in identity.gids)


def require_admin(actor: Actor, what: str, admin_group: str) -> None:
    """Raise NotAllowed unless `actor` is root or in the admin group."""
    if not actor.is_admin:
        raise NotAllowed(f"{what} needs root or membership in the group {admin_group}")


def require_job_access(actor: Actor, job: JobRecord, what: str) -> None:
    """Raise NotAllowed unless `actor` is an admin or the job's owner."""
    if not actor.may_see(job):
        raise NotAllowed(
            f"job {job.slurm_job_id} belongs to another user: you may {what} your own jobs only"
        )
