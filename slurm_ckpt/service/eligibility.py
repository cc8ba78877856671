"""Whose jobs may be checkpointed: members of the group that may run the CRIU copy
(`[criu] group`; the copy is root:<group> 0750 on every node).

A non-member's launcher runs the script without checkpoints, so the service marks
such a job uncheckpointable when it starts tracking it instead of sending it
requests that can only fail. The file's mode on the nodes is what keeps
non-members out; where this host cannot resolve the group or the user, the
service cannot tell and leaves the decision to the launcher.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Group databases (LDAP, sssd) are slow to ask and memberships change rarely; a
# thousand jobs of one user cost one lookup per TTL.
DEFAULT_TTL = 60.0
_MAX_CACHED = 10_000


def _user(uid: int) -> tuple[str, int]:
    entry = pwd.getpwuid(uid)
    return entry.pw_name, entry.pw_gid


def _group(name: str) -> int:
    return grp.getgrnam(name).gr_gid


@dataclass(frozen=True)
class Accounts:
    """The user and group databases; KeyError for an unknown name or id."""

    user: Callable[[int], tuple[str, int]]  # uid -> (name, primary gid)
    group: Callable[[str], int]  # group name -> gid
    groups_of: Callable[[str, int], list[int]]  # os.getgrouplist


SYSTEM = Accounts(_user, _group, os.getgrouplist)


def not_a_member(user: str, group: str, binary: Path) -> str:
    """The reason recorded for a job of a user outside the group."""
    return (
        f"user {user} is not in group {group} that may run {binary}: "
        "the job runs without checkpoints; an admin adds them"
    )


@dataclass(eq=False)
class CriuGroup:
    """Decides, per uid, whether that user's jobs can be checkpointed; cached briefly."""

    group: str
    binary: Path
    _: KW_ONLY
    ttl: float = DEFAULT_TTL  # seconds an answer is kept
    accounts: Accounts = SYSTEM
    clock: Callable[[], float] = time.monotonic
    _cache: dict[int, tuple[float, str | None]] = field(init=False, default_factory=dict)
    _warned: bool = field(init=False, default=False)

    def refusal(self, uid: int) -> str | None:
        """Why jobs of `uid` cannot be checkpointed, or None when they can (or nobody
        here can tell)."""
        now = self.clock()
        cached = self._cache.get(uid)
        if cached is not None and cached[0] > now:
            return cached[1]
        answer = self._decide(uid)
        if len(self._cache) >= _MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[uid] = (now + self.ttl, answer)
        return answer

    def _decide(self, uid: int) -> str | None:
        if uid == 0:
            return None  # root may execute any file with an execute bit
        try:
            gid = self.accounts.group(self.group)
        except KeyError:
            self._warn(f"group {self.group} does not exist on this host")
            return None
        try:
            name, primary = self.accounts.user(uid)
        except KeyError:
            self._warn(f"uid {uid} has no user entry on this host")
            return None
        try:
            member = gid == primary or gid in self.accounts.groups_of(name, primary)
        except OSError as exc:
            self._warn(f"cannot list the groups of {name}: {exc}")
            return None
        return None if member else not_a_member(name, self.group, self.binary)

    def _warn(self, problem: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "%s: cannot tell which jobs may be checkpointed; their launchers decide", problem
            )
