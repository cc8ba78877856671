"""`ckpt-admin doctor`: named checks of an installation, each with the fix when it fails.

Each check is a function returning a `CheckResult`; it never raises, so one
broken part never hides the state of the others.
"""

from __future__ import annotations

import glob
import grp
import json
import os
import pwd
import re
import stat
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from slurm_ckpt import proc
from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.cli.errors import ChecksFailed
from slurm_ckpt.cli.output import Column, Writer
from slurm_ckpt.cli.params import json_option
from slurm_ckpt.config import Settings
from slurm_ckpt.errors import CkptError, CommandFailed

MIN_CRIU = (4, 1)
CAP_CHECKPOINT_RESTORE = 40
_VFS_CAP_FLAGS_EFFECTIVE = 0x000001
_VFS_CAP_REVISION_MASK = 0xFF000000
_SUBMIT_MARKER = "-- slurm-ckpt job_submit.lua"
# A restore needs every pid of its image free. The kernel's default of 32768
# wraps within minutes on a busy node, so image pids get taken; systemd sets
# this (the 64-bit maximum) on its hosts.
PID_MAX = 4194304
PID_MAX_FILE = Path("/proc/sys/kernel/pid_max")
_TIMEOUT = 30.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str  # what was found
    fix: str = ""  # what to do about it, when not ok


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
        done = proc.run([str(binary), "--version"], timeout=_TIMEOUT)
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
    return _command_check(
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
    return _command_check(name, argv, f"{binary} check --unprivileged passes as {who}", fix)


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


def check_store_root(s: Settings) -> CheckResult:
    name, root = "store-root", s.paths.store_root
    fix = f"install -d -o root -m 0711 {root} (on a filesystem every node sees)"
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return CheckResult(name, False, f"{root} does not exist", fix)
    except OSError as err:
        return CheckResult(name, False, f"cannot stat {root}: {err.strerror}", fix)
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        return CheckResult(name, False, f"{root} is not a folder (or is a symlink)", fix)
    # Users only pass through the root to their own <root>/<user>/ folder, which
    # the trusted side makes: a root they could write would let anyone make
    # another user's folder first. 0711 also hides the list of user names.
    if st.st_uid != 0 or mode & 0o022:
        return CheckResult(
            name,
            False,
            f"{root} is mode {mode:04o}, owner uid {st.st_uid}; want root-owned and "
            "not writable by group or others (0711 or 0755)",
            fix,
        )
    return CheckResult(name, True, f"{root}: mode {mode:04o}, owned by root")


def check_catalog(s: Settings) -> CheckResult:
    from slurm_ckpt.db import migrate
    from slurm_ckpt.db.session import shown_url

    name, url = "catalog", shown_url(s.catalog.url)
    try:
        have, want = migrate.current(s.catalog.url), migrate.head()
    except CkptError as err:
        return CheckResult(
            name, False, str(err), "check catalog.url and that the database server is up"
        )
    if have != want:
        return CheckResult(
            name,
            False,
            f"{url} is at revision {have or 'none'}, not {want}",
            "run `ckpt-admin db upgrade`",
        )
    return CheckResult(name, True, f"{url} at revision {want}")


def check_slurm(s: Settings) -> CheckResult:
    from slurm_ckpt.slurm import registry

    try:
        nodes = registry.create(s.slurm.adapter, s.slurm).node_states()
    except CkptError as err:
        return CheckResult("slurm", False, str(err), "start slurmctld and munged; check slurm.conf")
    up = sum(1 for node in nodes.values() if node.is_usable)
    return CheckResult("slurm", True, f"controller answers; {up} of {len(nodes)} nodes usable")


def check_spank_plugin(s: Settings) -> CheckResult:
    name = "spank-plugin"
    conf = _slurm_conf_dir() / "plugstack.conf"
    fix = (
        f"list `required <prefix>/lib/slurm-ckpt/spank/slurm_ckpt.so` in {conf} or a file "
        "it includes (scripts/setup-system.sh plugins)"
    )
    entries = _plugstack_entries(conf)
    ours = [(kind, path) for kind, path in entries if Path(path).name == "slurm_ckpt.so"]
    if not ours:
        return CheckResult(name, False, f"slurm_ckpt.so is not listed in {conf}", fix)
    kind, path = ours[0]
    if kind != "required":
        return CheckResult(name, False, f"slurm_ckpt.so is listed as {kind}, not required", fix)
    if not Path(path).is_file():
        return CheckResult(name, False, f"{path} (listed in plugstack) does not exist", fix)
    return CheckResult(name, True, f"required {path}")


def check_job_submit(s: Settings) -> CheckResult:
    name = "job-submit-lua"
    folder = _slurm_conf_dir()
    lua, settings_file = folder / "job_submit.lua", folder / "slurm-ckpt-submit.conf"
    want = str(int(s.checkpoint.min_interval.total_seconds()))  # the file counts seconds
    fix = (
        f"install plugins/job_submit.lua as {lua}, JobSubmitPlugins=lua in slurm.conf, and "
        f"{settings_file} with launcher and min_interval = {want}"
    )
    try:
        head = lua.read_text(errors="replace")[:200]
    except OSError as err:
        return CheckResult(name, False, f"cannot read {lua}: {err.strerror}", fix)
    if not head.startswith(_SUBMIT_MARKER):
        return CheckResult(name, False, f"{lua} is not slurm-ckpt's job_submit.lua", fix)
    try:
        config = proc.run(["scontrol", "show", "config"], timeout=_TIMEOUT).stdout
    except CkptError as err:
        return CheckResult(name, False, f"cannot read Slurm's configuration: {err}", fix)
    if not re.search(r"^JobSubmitPlugins\s*=.*\blua\b", config, re.MULTILINE):
        return CheckResult(name, False, "JobSubmitPlugins does not include lua", fix)
    try:
        values = _key_values(settings_file.read_text())
    except OSError as err:
        return CheckResult(name, False, f"cannot read {settings_file}: {err.strerror}", fix)
    launcher = values.get("launcher", "")
    if not launcher or not os.access(launcher, os.X_OK):
        return CheckResult(name, False, f"launcher {launcher or '(unset)'} is not executable", fix)
    if values.get("min_interval") != want:
        return CheckResult(
            name,
            False,
            f"{settings_file}: min_interval = {values.get('min_interval')}, but "
            f"checkpoint.min_interval is {want}s",
            fix,
        )
    return CheckResult(name, True, f"{lua}, lua enabled, min_interval {want}s, {launcher}")


def check_service(s: Settings) -> CheckResult:
    name, svc = "service", s.service
    if not svc.metrics_port:
        return CheckResult(
            name, False, "service.metrics_port is 0: no /healthz to ask", "set service.metrics_port"
        )
    url = f"http://{svc.metrics_host}:{svc.metrics_port}/healthz"
    fix = "start slurm-ckptd (scripts/cluster.sh start-service here) and read its log"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace").strip()
        return CheckResult(name, False, f"{url}: HTTP {err.code} {detail}", fix)
    except (OSError, ValueError) as err:
        return CheckResult(name, False, f"{url}: no answer ({err})", fix)
    age = body.get("last_sync_age_seconds") if isinstance(body, dict) else None
    shown = f"{age:.0f}s ago" if isinstance(age, int | float) else "not yet"
    return CheckResult(name, True, f"{url}: ok, last sync {shown}")


CHECKS: tuple[Callable[[Settings], CheckResult], ...] = (
    check_criu_version,
    check_criu_check,
    check_criu_group,
    check_criu_unprivileged,
    check_criu_capability,
    check_pid_max,
    check_store_root,
    check_catalog,
    check_slurm,
    check_spank_plugin,
    check_job_submit,
    check_service,
)


def run_checks(settings: Settings) -> list[CheckResult]:
    results = []
    for check in CHECKS:
        try:
            results.append(check(settings))
        except Exception as err:  # a bug in one check must not hide the others
            name = check.__name__.removeprefix("check_").replace("_", "-")
            results.append(CheckResult(name, False, f"check crashed: {err!r}", "report this"))
    return results


COLUMNS = (Column("CHECK"), Column("RESULT"), Column("DETAIL", shrink=True))


@click.command()
@json_option
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check CRIU, its capability, the store, the catalog, Slurm, the plugins and the
    service; print the fix for each failure. Exit 9 when a check fails."""
    out = Writer(json_mode=as_json)
    try:
        results = run_checks(app.settings)
    except CkptError as err:
        results = [CheckResult("config", False, str(err), "correct the setting it names")]
    failed = [r for r in results if not r.ok]
    if out.json_mode:
        out.document(
            "doctor",
            {
                "ok": not failed,
                "checks": [
                    {"name": r.name, "ok": r.ok, "detail": r.detail, "fix": r.fix or None}
                    for r in results
                ],
            },
        )
    else:
        out.table(COLUMNS, [[r.name, "ok" if r.ok else "FAIL", r.detail] for r in results])
        for r in failed:
            out.line(f"fix {r.name}: {r.fix}")
    if failed:
        names = ", ".join(r.name for r in failed)
        raise ChecksFailed(f"{len(failed)} of {len(results)} checks failed: {names}")


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


def _command_check(name: str, argv: list[str], ok_detail: str, fix: str) -> CheckResult:
    try:
        proc.run(argv, timeout=_TIMEOUT)
    except CommandFailed as err:
        last = (err.stderr or err.stdout).strip().splitlines()
        return CheckResult(name, False, last[-1] if last else str(err), fix)
    except CkptError as err:
        return CheckResult(name, False, str(err), fix)
    return CheckResult(name, True, ok_detail)


def _slurm_conf_dir() -> Path:
    return Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).parent


def _plugstack_entries(conf: Path, depth: int = 0) -> list[tuple[str, str]]:
    """(required|optional, plugin path) of every plugin line, following includes."""
    try:
        lines = conf.read_text(errors="replace").splitlines()
    except OSError:
        return []
    entries: list[tuple[str, str]] = []
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "include" and depth < 4:
            pattern = words[1] if words[1].startswith("/") else str(conf.parent / words[1])
            for included in sorted(glob.glob(pattern)):
                entries += _plugstack_entries(Path(included), depth + 1)
        elif len(words) >= 2 and words[0] in ("required", "optional"):
            entries.append((words[0], words[1]))
    return entries


def _key_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
