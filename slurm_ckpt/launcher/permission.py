"""May this job's user run the CRIU copy? Only members of one group may (root:<group>
0750): whoever runs it can choose PIDs and squat those of another user's image.

`look` reads the system; `refusal` decides, and is pure.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from slurm_ckpt.errors import LauncherError


class NotPermitted(LauncherError):
    """The job's user may not run the CRIU copy; the message is the whole log line."""


@dataclass(frozen=True)
class Access:
    """What this process may do with the CRIU copy, and why."""

    user: str
    runnable: bool  # execute permission for this process
    groups: frozenset[int]  # this process's gid and supplementary groups
    file_gid: int | None  # None: the copy is missing
    file_group: str | None  # the file group's name, None when it has none here
    group_may_run: bool  # the file's group has execute permission
    listed_member: bool  # the group database lists the user in the file's group


def look(binary: Path) -> Access:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid)
        name, primary = user.pw_name, user.pw_gid
    except KeyError:
        name, primary = str(uid), os.getgid()
    groups = frozenset({os.getgid(), *os.getgroups()})
    try:
        st = os.stat(binary)
    except OSError:
        return Access(name, False, groups, None, None, False, False)
    try:
        file_group: str | None = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        file_group = None
    try:
        listed = st.st_gid in os.getgrouplist(name, primary)
    except OSError:
        listed = False
    return Access(
        user=name,
        runnable=os.access(binary, os.X_OK),
        groups=groups,
        file_gid=st.st_gid,
        file_group=file_group,
        group_may_run=bool(st.st_mode & stat.S_IXGRP),
        listed_member=listed,
    )


def refusal(access: Access, binary: Path, group: str) -> str | None:
    """The one log line for a user kept out by the copy's group, else None.

    `group` (the configured one) names the group when the file's has no name here.
    Other reasons not to run it (missing, no execute bit at all) are left to the
    backend's probe, which reports them.
    """
    if access.runnable or access.file_gid is None or not access.group_may_run:
        return None
    if access.file_gid in access.groups:
        return None
    name = access.file_group or group
    if access.listed_member:
        # Added after this job started: Slurm caches a user's groups (GroupUpdateTime).
        return (
            f"user {access.user} is in group {name} that may run {binary}, but this job "
            "started without that group: running without checkpoints; later jobs get it"
        )
    return (
        f"user {access.user} is not in group {name} that may run {binary}: "
        "running without checkpoints; an admin adds them"
    )
