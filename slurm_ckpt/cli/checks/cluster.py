"""doctor's checks of the cluster: Slurm's controller answering, its release against
the tested ones (slurm/releases.py), the SPANK plugin
listed `required` in plugstack, job_submit.lua installed with lua enabled and
settings matching `checkpoint.min_interval`, and slurm-ckptd's `/healthz`."""

from __future__ import annotations

import glob
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from slurm_ckpt import proc
from slurm_ckpt.cli.checks.base import TIMEOUT, CheckResult
from slurm_ckpt.config import Settings
from slurm_ckpt.errors import CkptError

_SUBMIT_MARKER = "-- slurm-ckpt job_submit.lua"


def check_slurm(s: Settings) -> CheckResult:
    from slurm_ckpt.slurm import registry

    try:
        nodes = registry.create(s.slurm.adapter, s.slurm).node_states()
    except CkptError as err:
        return CheckResult("slurm", False, str(err), "start slurmctld and munged; check slurm.conf")
    up = sum(1 for node in nodes.values() if node.is_usable)
    return CheckResult("slurm", True, f"controller answers; {up} of {len(nodes)} nodes usable")


def check_slurm_release(s: Settings) -> CheckResult:
    from slurm_ckpt.slurm import releases

    name = "slurm-release"
    tested = ", ".join(releases.TESTED)
    try:
        out = proc.run(["scontrol", "--version"], timeout=TIMEOUT).stdout
    except CkptError as err:
        return CheckResult(name, False, str(err), "install Slurm's client commands on PATH")
    version = releases.parse_version(out)
    if version is None:
        return CheckResult(
            name,
            False,
            f"unreadable version: {out.strip()[:80]!r}",
            "put Slurm's scontrol first on PATH",
        )
    dotted = f"{releases.major(version)}.{version[2]}"
    found = releases.support(version)
    if found == releases.Support.TESTED:
        return CheckResult(name, True, f"Slurm {dotted}: supported (tested: {tested})")
    if found == releases.Support.TOO_OLD:
        return CheckResult(
            name,
            False,
            f"Slurm {dotted} is older than 22.05: unsupported",
            f"upgrade Slurm to a tested release ({tested})",
        )
    return CheckResult(
        name,
        False,
        f"Slurm {dotted} is not a tested release (tested: {tested})",
        f"it may work: run make test with SLURM_RELEASE={releases.major(version)} first,"
        f" or use a tested release",
    )


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
        config = proc.run(["scontrol", "show", "config"], timeout=TIMEOUT).stdout
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
