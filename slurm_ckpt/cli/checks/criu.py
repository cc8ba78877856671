"""doctor's checks of CRIU and the node it runs on: CRIU's version and `criu check`,
the `[criu] group`, `check --unprivileged` as a member of it, the unprivileged
copy's owner, mode and file capability, and the kernel's pid_max."""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from slurm_ckpt import proc
from slurm_ckpt.cli.checks.base import TIMEOUT, CheckResult, command_check
from slurm_ckpt.config import Settings
from slurm_ckpt.errors import CkptError

MIN_CRIU = (4, 1)
CAP_CHECKPOINT_RESTORE = 40
_VFS_CAP_FLAGS_EFFECTIVE = 0x000001
_VFS_CAP_REVISION_MASK = 0xFF000000
# A restore needs every pid of its image free. The kernel's default of 32768
# wraps within minutes on a busy node, so image pids get taken; systemd sets
# this (the 64-bit maximum) on its hosts.
PID_MAX = 4194304
PID_MAX_FILE = Path("/proc/sys/kernel/pid_max")


@dataclass(frozen=True)
class FileCaps:
    permitted: frozenset[int]
    inheritable: frozenset[int]
    effective: bool


def parse_file_caps(raw: bytes) -> FileCaps:
    """Decode a `security.capability` xattr (vfs_cap_data, revisions 1-3). Raises ValueError."""
    if len(raw) < 12:
        raise ValueError(f"capability data of {len(raw)} bytes is too short")
    (magic,) = struct.unpack_from("<I", raw, 0)
    revision = magic & _VFS_CAP_REVISION_MASK
    words = 1 if revision == 0x01000000 else 2
    if revision not in (0x01000000, 0x02000000, 0x03000000) or len(raw) < 4 + 8 * words:
        raise ValueError(f"unknown capability data revision {revision:#x}")
    permitted: set[int] = set()
    inheritable: set[int] = set()
    for word in range(words):
        p, i = struct.unpack_from("<II", raw, 4 + 8 * word)
        for bit in range(32):
            if p >> bit & 1:
                permitted.add(32 * word + bit)
            if i >> bit & 1:
                inheritable.add(32 * word + bit)
    return FileCaps(
        frozenset(permitted), frozenset(inheritable), bool(magic & _VFS_CAP_FLAGS_EFFECTIVE)
    )


def criu_version(text: str) -> tuple[int, ...] | None:
    """The version in `criu --version` output ("Version: 4.2.1"), or None."""
    match = re.search(r"Version:\s*([0-9]+(?:\.[0-9]+)*)", text)
    return None if match is None else tuple(int(part) for part in match.group(1).split("."))


def check_criu_version(s: Settings) -> CheckResult:
    name, binary = "criu-version", s.criu.root_binary
    fix = f"install CRIU >= {_dotted(MIN_CRIU)} as {binary} (scripts/setup-system.sh criu)"
    try:
        done = proc.run([str(binary), "--version"], timeout=TIMEOUT)
    except CkptError as err:
        return CheckResult(name, False, str(err), fix)
    version = criu_version(done.stdout)
    if version is None:
        return CheckResult(name, False, f"{binary} --version printed no version", fix)
    if version < MIN_CRIU:
        return CheckResult(name, False, f"CRIU {_dotted(version)} is too old", fix)
    return CheckResult(name, True, f"CRIU {_dotted(version)} ({binary})")


def check_criu_check(s: Settings) -> CheckResult:
    name, binary = "criu-check", s.criu.root_binary
    if os.geteuid() != 0:
        return CheckResult(name, False, "`criu check` needs root", "run ckpt-admin doctor as root")
    return command_check(
        name,
        [str(binary), "check"],
        f"{binary} check: looks good",
        f"run `{binary} check` and enable the kernel features it names",
    )


def check_criu_group(s: Settings) -> CheckResult:
    name, group = "criu-group", s.criu.group
    gid = group_gid(group)
    if gid is None:
        return CheckResult(
            name,
            False,
            f"group {group} does not exist",
            f"groupadd --system {group} (or create it in the directory) and add the users "
            f"whose jobs are checkpointed; then {_unpriv_fix(s)}",
        )
    # Its members are the site's business, and not every reader's: none are listed.
    return CheckResult(name, True, f"group {group} exists (gid {gid})")


def check_criu_unprivileged(s: Settings) -> CheckResult:
    name, binary, group = "criu-unprivileged", s.criu.binary, s.criu.group
    fix = f"{_unpriv_fix(s)}; Linux >= 5.9 is needed"
    argv = [str(binary), "check", "--unprivileged"]
    who = "this user"
    # Root would pass for the wrong reason; ask as an ordinary user who may run it.
    if os.geteuid() == 0:
        member = _as_member_of(group)
        if member is None:
            return CheckResult(name, False, f"group {group} or user nobody does not exist", fix)
        argv, who = [*member, *argv], f"nobody in group {group}"
    return command_check(name, argv, f"{binary} check --unprivileged passes as {who}", fix)


def check_criu_capability(s: Settings) -> CheckResult:
    name, binary, group = "criu-capability", s.criu.binary, s.criu.group
    fix = _unpriv_fix(s)
    try:
        st = os.lstat(binary)
        raw = os.getxattr(binary, "security.capability", follow_symlinks=False)
        caps = parse_file_caps(raw)
    except FileNotFoundError:
        return CheckResult(name, False, f"{binary} does not exist", fix)
    except OSError as err:
        return CheckResult(
            name, False, f"{binary} carries no file capability ({err.strerror})", fix
        )
    except ValueError as err:
        return CheckResult(name, False, f"{binary}: {err}", fix)
    problems = []
    if not stat.S_ISREG(st.st_mode):
        problems.append("not a regular file")
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        problems.append("setuid or setgid")
    gid = group_gid(group)
    if gid is None:
        problems.append(f"group {group} does not exist")
    # Only the group may run it: whoever can, can choose PIDs and squat another user's.
    if st.st_uid != 0 or st.st_gid != gid or stat.S_IMODE(st.st_mode) != 0o750:
        problems.append(
            f"owner {st.st_uid}:{st.st_gid} mode {stat.S_IMODE(st.st_mode):04o}, "
            f"want root:{group} 0750"
        )
    extra = sorted(caps.permitted - {CAP_CHECKPOINT_RESTORE})
    if extra:
        problems.append(f"extra capabilities {extra}")
    if CAP_CHECKPOINT_RESTORE not in caps.permitted or not caps.effective:
        problems.append("cap_checkpoint_restore is not permitted and effective")
    if caps.inheritable:
        problems.append(f"inheritable capabilities {sorted(caps.inheritable)}")
    if problems:
        return CheckResult(name, False, f"{binary}: {'; '.join(problems)}", fix)
    return CheckResult(
        name, True, f"{binary}: root:{group} 0750, cap_checkpoint_restore=ep and nothing more"
    )


def check_pid_max(s: Settings, path: Path = PID_MAX_FILE) -> CheckResult:
    name = "pid-max"
    fix = f"sysctl -w kernel.pid_max={PID_MAX} (and set it in /etc/sysctl.d/ on every node)"
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError) as err:
        return CheckResult(name, False, f"cannot read {path}: {err}", fix)
    if value < PID_MAX:
        return CheckResult(
            name,
            False,
            f"kernel.pid_max is {value}: pids wrap soon, and a restore fails when a pid "
            "of its image is taken",
            fix,
        )
    return CheckResult(name, True, f"kernel.pid_max is {value}")


def group_gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _as_member_of(group: str) -> list[str] | None:
    """A command prefix running as nobody with `group` as its one supplementary group."""
    gid = group_gid(group)
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None
    if gid is None:
        return None
    return [
        "setpriv",
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        f"--groups={gid}",
        "--",
    ]


def _unpriv_fix(s: Settings) -> str:
    # chown clears file capabilities: setcap comes last.
    binary, group = s.criu.binary, s.criu.group
    return (
        f"chown root:{group} {binary} && chmod 0750 {binary} && "
        f"setcap cap_checkpoint_restore=ep {binary}"
    )


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
