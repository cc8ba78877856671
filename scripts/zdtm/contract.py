"""The zdtm contract: CRIU's own static tests, checkpointed and restored (a) by plain
unprivileged CRIU and (b) through the launcher's whole path, as an ordinary user.

Run as root (after scripts/zdtm/build.sh); every test runs as the test user:

    .venv/bin/python scripts/zdtm/contract.py --json out.json --markdown out.md [TEST...]

zdtm's protocol, per test and mode: start the test (it daemonizes: test_init forks and
the parent exits, so it runs under a tiny child subreaper that adopts the daemon and
keeps it inside one process tree), wait for its pidfile, checkpoint, restore, SIGTERM
the test and read its own PASS/FAIL verdict from its outfile.

- bare: no checkpoint at all (does the test run here as this user?).
- plain: `criu-unpriv dump --unprivileged -t ROOT` (the tree is killed), then
  `criu-unpriv restore -d --unprivileged`, with the test's own CRIU options from its
  .desc file, as zdtm.py passes them. The test runs with no_new_privs, as the
  launcher's workload does: on machines whose bounding set lacks CAP_SYS_RESOURCE,
  an unprivileged restore of a task without it fails ("Unable to drop capability").
- launcher: the test is the workload of slurm-ckpt-launch (`/bin/sh job.sh`, which
  execs the subreaper), started as slurmstepd would, outside Slurm: a checkpoint
  request file and SIGUSR1, the result file, SIGKILL of the whole tree, the launcher
  started again with SLURM_RESTART_COUNT=1 (it restores), then SIGTERM to the test.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import ctypes
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slurm_ckpt.dump.criu import tree_pids
from slurm_ckpt.store.folders import ensure_user_dir
from slurm_ckpt.store.layout import JobDir

ZDTM_ROOT = Path(os.environ.get("ZDTM_ROOT", "/var/tmp/slurm-ckpt-zdtm"))
PREFIX = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt"))
HERE = Path(__file__).resolve().parent
DEFAULT_LAUNCHER = PREFIX / "venv/bin/slurm-ckpt-launch"  # as installed, as jobs run it
MODES = ("bare", "plain", "launcher")
PASS, FAIL, ERROR, SKIP = "PASS", "FAIL", "ERROR", "SKIP"
_PR_SET_CHILD_SUBREAPER = 36
JOB_ID_BASE = 700000


class StepError(Exception):
    """A step of a run failed; the message is the reason reported in the table."""


@dataclass
class Outcome:
    status: str  # PASS, FAIL (the test's verdict), ERROR (a C/R step failed), SKIP
    reason: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TestSpec:
    name: str
    argv: list[str]  # the test's command line as zdtm's Makefile has it, binary absolute
    desc: dict[str, Any]
    pidfile: str
    outfile: str

    def criu_opts(self, key: str) -> list[str]:
        return [*str(self.desc.get("opts", "")).split(), *str(self.desc.get(key, "")).split()]


@dataclass
class Context:
    user: pwd.struct_passwd
    static: Path
    subreaper: Path
    criu: Path
    launcher: Path
    run_dir: Path
    store_root: Path
    config: Path
    timeout: float
    keep: bool = False  # keep the folders and images of passed runs too
    features: dict[str, bool] = field(default_factory=dict)
    job_seq: int = 0


# -- small helpers -------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise StepError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def reap(pids: Sequence[int]) -> None:
    """Reap those of `pids` that are our zombies. We are a child subreaper, so the
    orphans of a killed or detached tree are ours; only named pids are reaped, so the
    statuses subprocess waits for are never stolen."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def kill_tree(root: int) -> list[int]:
    """Kill a process tree at once, as a node failure would; return its pids."""
    pids = tree_pids(root)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    return pids


def wait_gone(pids: Sequence[int], timeout: float) -> None:
    """Wait until `pids` are free again (reaped), reaping our own zombies."""

    def free() -> bool:
        reap(pids)
        return not any(os.path.exists(f"/proc/{p}") for p in pids)

    wait_until(free, timeout, f"pids {list(pids)} to be free")


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def criu_reason(log_file: Path) -> str:
    """The first error CRIU logged, the way a person reads a CRIU log."""
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no {log_file.name})"
    errors = [line for line in text.splitlines() if "Error (" in line]
    if not errors:
        errors = [line for line in text.splitlines() if line.strip()][-1:]
    if not errors:
        return "(empty CRIU log)"
    line = errors[0]
    # "(00.012345) pid: Error (criu/x.c:12): message" -> "criu/x.c:12: message"
    if "Error (" in line:
        where, _, message = line.split("Error (", 1)[1].partition("): ")
        return f"{message.strip()} ({where})"
    return line.strip()


def as_user(ctx: Context, *, no_new_privs: bool = False) -> list[str]:
    """A prefix that runs a command as the test user, exec'ing in place (setpriv), so
    the pid we start is the command's own and it can be a session leader."""
    user = ctx.user
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    if no_new_privs:
        prefix.append("--no-new-privs")
    return [*prefix, "--"]


def user_env(ctx: Context, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": ctx.user.pw_dir,
        "USER": ctx.user.pw_name,
        "LOGNAME": ctx.user.pw_name,
        "LANG": "C",
        **extra,
    }


def run_user(
    ctx: Context, command: list[str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end as the test user (runuser: a short-lived helper such
    as criu, which must keep its file capability, so no no_new_privs)."""
    try:
        return subprocess.run(
            ["/usr/sbin/runuser", "-u", ctx.user.pw_name, "--", *command],
            cwd=cwd,
            env=user_env(ctx),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StepError(
            f"{Path(command[0]).name} {command[1]} timed out after {timeout:.0f}s"
        ) from exc


def user_dir(ctx: Context, path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(path, ctx.user.pw_uid, ctx.user.pw_gid)
    return path


@contextlib.contextmanager
def output_file(ctx: Context, path: Path) -> Iterator[int]:
    """The job's output, opened write-only with O_APPEND as slurmstepd opens it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.fchown(fd, ctx.user.pw_uid, ctx.user.pw_gid)
        yield fd
    finally:
        os.close(fd)


# -- the tests -----------------------------------------------------------------


def read_list(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def load_spec(static: Path, name: str) -> TestSpec:
    """The test's command line from zdtm's own Makefile rule for <test>.pid."""
    if not (static / name).is_file():
        raise StepError(f"{static / name} is not built (run scripts/zdtm/build.sh)")
    made = subprocess.run(
        ["make", "-s", "-n", "-C", str(static), f"{name}.pid"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = [line for line in made.stdout.splitlines() if line.startswith(f"./{name} ")]
    if made.returncode != 0 or not lines:
        raise StepError(f"no command line for {name} in zdtm's Makefile: {made.stderr.strip()}")
    argv = shlex.split(lines[-1])
    argv[0] = str(static / name)
    options = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    desc: dict[str, Any] = {}
    desc_file = static / f"{name}.desc"
    if desc_file.exists():
        text = desc_file.read_text().strip()
        try:
            parsed = ast.literal_eval(text) if text else {}
        except (ValueError, SyntaxError) as exc:
            raise StepError(f"{desc_file.name} is not a literal: {exc}") from exc
        if isinstance(parsed, dict):
            desc = {str(k): v for k, v in parsed.items()}
    return TestSpec(name, argv, desc, options["pidfile"], options["outfile"])


def skip_reason(ctx: Context, spec: TestSpec, workdir: Path) -> str | None:
    """Why zdtm.py itself would skip this test here, or None."""
    flags = str(spec.desc.get("flags", "")).split()
    for flag, why in (
        ("suid", "suid test (needs root)"),
        ("nouser", "nouser: CRIU needs root"),
        ("crfail", "crfail: C/R is expected to fail"),
    ):
        if flag in flags:
            return why
    if "h" not in str(spec.desc.get("flavor", "h ns uns")).split():
        return "no host flavor"
    for feature in str(spec.desc.get("feature", "")).split():
        if feature not in ctx.features:
            check = run_user(
                ctx,
                [
                    str(ctx.criu),
                    "check",
                    "--unprivileged",
                    "--no-default-config",
                    "--feature",
                    feature,
                ],
                workdir,
                30,
            )
            ctx.features[feature] = check.returncode == 0
        if not ctx.features[feature]:
            return f"CRIU feature {feature} missing (criu check --unprivileged)"
    checkskip = ctx.static / f"{spec.name}.checkskip"
    if (
        checkskip.exists()
        and run_user(ctx, ["/bin/bash", str(checkskip)], workdir, 30).returncode != 0
    ):
        return "its .checkskip script fails here"
    return None


class Started:
    """The test's tree as started: `root` is the subreaper, `test` the daemon."""

    def __init__(self, ctx: Context, spec: TestSpec, workdir: Path, proc: subprocess.Popen[bytes]):
        self.ctx = ctx
        self.spec = spec
        self.workdir = workdir
        self.proc = proc
        self.test = 0

    def wait_ready(self, root: int) -> int:
        """Wait for the pidfile, then for the test's parent to be gone, so the tree
        is the subreaper and the daemon (with its own children), no zombie."""
        pidfile = self.workdir / self.spec.pidfile

        def ready() -> int:
            if self.proc.poll() is not None:
                raise StepError(
                    f"the test ended before writing its pidfile (exit {self.proc.returncode}): "
                    f"{tail(self.workdir / self.spec.outfile)}"
                )
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(pidfile.read_text().split()[0])
            return 0

        self.test = int(wait_until(ready, self.ctx.timeout, "the test's pidfile"))

        def settled() -> bool:
            children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
            return children == [str(self.test)]

        wait_until(settled, 5, "the test's parent to exit")
        return self.test


def stop_test(ctx: Context, spec: TestSpec, workdir: Path, test: int) -> Outcome:
    """SIGTERM the test and read its own verdict, as zdtm.py does."""
    try:
        os.kill(test, signal.SIGTERM)
    except ProcessLookupError:
        return Outcome(
            FAIL, f"the test is not running after restore: {tail(workdir / spec.outfile)}"
        )
    with contextlib.suppress(StepError):
        wait_until(lambda: not alive(test), ctx.timeout, "the test to exit")
    if alive(test):
        with contextlib.suppress(ProcessLookupError):
            os.kill(test, signal.SIGKILL)
        return Outcome(FAIL, f"the test did not exit on SIGTERM within {ctx.timeout:.0f}s")
    last = tail(workdir / spec.outfile, 1)
    if "PASS" in last.split():
        return Outcome(PASS)
    verdict = tail(workdir / spec.outfile, 3) or tail(workdir / f"{spec.outfile}.inprogress", 3)
    return Outcome(FAIL, f"zdtm verdict: {verdict or '(empty outfile)'}")


def start_plain(ctx: Context, spec: TestSpec, workdir: Path) -> Started:
    with output_file(ctx, workdir / "console.txt") as out:
        proc = subprocess.Popen(
            [*as_user(ctx, no_new_privs=True), str(ctx.subreaper), *spec.argv],
            cwd=workdir,
            env=user_env(ctx),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    return Started(ctx, spec, workdir, proc)


def run_bare(ctx: Context, spec: TestSpec, workdir: Path) -> Outcome:
    started = start_plain(ctx, spec, workdir)
    root = started.proc.pid
    try:
        test = started.wait_ready(root)
        time.sleep(0.2)
        outcome = stop_test(ctx, spec, workdir, test)
    finally:
        cleanup(started.proc, root)
    return outcome


def run_plain(ctx: Context, spec: TestSpec, workdir: Path) -> Outcome:
    started = start_plain(ctx, spec, workdir)
    root = started.proc.pid
    images = user_dir(ctx, workdir / "images")
    criu = [str(ctx.criu)]
    common = ["--unprivileged", "-D", str(images), "-v4", "--manage-cgroups=ignore"]
    try:
        test = started.wait_ready(root)
        pids = tree_pids(root)
        dump = run_user(
            ctx,
            [*criu, "dump", *common, "-o", "dump.log", "-t", str(root), *spec.criu_opts("dopts")],
            workdir,
            ctx.timeout,
        )
        if dump.returncode != 0:
            raise StepError(f"dump: {criu_reason(images / 'dump.log')}")
        started.proc.wait(timeout=ctx.timeout)
        wait_gone(pids, ctx.timeout)
        restore = run_user(
            ctx,
            [*criu, "restore", "-d", *common, "-o", "restore.log", *spec.criu_opts("ropts")],
            workdir,
            ctx.timeout,
        )
        if restore.returncode != 0:
            raise StepError(f"restore: {criu_reason(images / 'restore.log')}")
        outcome = stop_test(ctx, spec, workdir, test)
        # The restored root was reparented to us (a subreaper) when criu detached.
        with contextlib.suppress(StepError):
            wait_until(lambda: not alive(root), 5, "the restored subreaper to exit")
        reap([root, test])
        return outcome
    finally:
        cleanup(started.proc, root)


def next_job_id(ctx: Context) -> int:
    ctx.job_seq += 1
    return JOB_ID_BASE + os.getpid() % 1000 * 100 + ctx.job_seq


def start_launcher(
    ctx: Context, workdir: Path, job_id: int, restart_count: int
) -> subprocess.Popen[bytes]:
    env = user_env(
        ctx,
        SLURM_JOB_ID=str(job_id),
        SLURM_RESTART_COUNT=str(restart_count),
        SLURM_CKPT_CONFIG=str(ctx.config),
    )
    with output_file(ctx, workdir / "slurm.out") as out:
        return subprocess.Popen(
            [*as_user(ctx), str(ctx.launcher), "/bin/sh", str(workdir / "job.sh")],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_launcher(ctx: Context, spec: TestSpec, workdir: Path) -> Outcome:
    job_id = next_job_id(ctx)
    jobdir = JobDir(ctx.store_root, ctx.user.pw_name, job_id).path
    script = workdir / "job.sh"
    script.write_text(f"exec {shlex.join([str(ctx.subreaper), *spec.argv])}\n")
    os.chown(script, ctx.user.pw_uid, ctx.user.pw_gid)
    details: dict[str, Any] = {"job_id": job_id, "jobdir": str(jobdir)}
    first = start_launcher(ctx, workdir, job_id, 0)
    second: subprocess.Popen[bytes] | None = None
    try:
        started = Started(ctx, spec, workdir, first)

        def workload() -> int:
            if first.poll() is not None:
                raise StepError(
                    f"the launcher exited ({first.returncode}) before starting the test: "
                    f"{tail(jobdir / 'launcher.log')}"
                )
            # /bin/sh job.sh, once it has exec'd the subreaper (the launcher's other
            # children are short-lived criu probes).
            children = Path(f"/proc/{first.pid}/task/{first.pid}/children").read_text().split()
            mine = [int(c) for c in children if comm(int(c)) == ctx.subreaper.name]
            return mine[0] if mine else 0

        root = int(wait_until(workload, ctx.timeout, "the launcher's workload"))
        test = started.wait_ready(root)
        request = jobdir / "request.json"
        tmp = request.with_suffix(".tmp")
        tmp.write_text(json.dumps({"job_id": job_id, "seq": 1, "kind": "periodic"}))
        os.chown(tmp, ctx.user.pw_uid, ctx.user.pw_gid)
        tmp.rename(request)
        os.kill(first.pid, signal.SIGUSR1)
        try:
            result = wait_until(
                lambda: read_json(jobdir / "results" / "000001.json"),
                ctx.timeout,
                "the checkpoint's result file",
            )
        except StepError as exc:
            # Where the dump stands: the last line of CRIU's log of it.
            last = tail(jobdir / "logs" / "dump-000001.log", 1)
            raise StepError(f"{exc}; CRIU's dump log ends: {last or '(no log)'}") from exc
        details["result"] = result
        if not result.get("ok"):
            raise StepError(f"checkpoint: {result.get('error', result)}")
        pids = kill_tree(first.pid)
        first.wait(timeout=ctx.timeout)
        wait_gone(pids, ctx.timeout)
        second = start_launcher(ctx, workdir, job_id, 1)
        report = wait_until(
            lambda: (
                read_json(jobdir / "restarts" / "0001.json")
                or (
                    second.poll() is not None
                    and {"outcome": f"launcher exited {second.returncode}"}
                )
            ),
            ctx.timeout,
            "the restart report",
        )
        details["restart"] = report
        if report.get("outcome") != "restored":
            errors = [str(a.get("error", a)) for a in report.get("attempts", [])]
            raise StepError(f"restore ({report.get('outcome')}): {'; '.join(errors) or report}")
        outcome = stop_test(ctx, spec, workdir, test)
        try:
            code = second.wait(timeout=ctx.timeout)
            details["launcher_exit"] = code
        except subprocess.TimeoutExpired:
            if outcome.status == PASS:
                outcome = Outcome(FAIL, "the launcher did not exit after the workload ended")
    except StepError as exc:
        outcome = Outcome(ERROR, str(exc))
    finally:
        for proc in (first, second):
            if proc is not None:
                cleanup(proc, proc.pid)
    outcome.details = details
    return outcome


def cleanup(proc: subprocess.Popen[bytes], root: int) -> None:
    """Leave nothing running: kill whatever is left of the tree and reap it."""
    pids = kill_tree(root) if alive(root) else [root]
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(StepError):
        wait_gone(pids, 5)


RUNNERS: dict[str, Callable[[Context, TestSpec, Path], Outcome]] = {
    "bare": run_bare,
    "plain": run_plain,
    "launcher": run_launcher,
}


def run_one(ctx: Context, name: str, modes: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"test": name}
    base = user_dir(ctx, ctx.run_dir / name)
    try:
        spec = load_spec(ctx.static, name)
    except StepError as exc:
        for mode in modes:
            row[mode] = asdict(Outcome(ERROR, str(exc)))
        return row
    skipped = skip_reason(ctx, spec, base)
    for mode in modes:
        if skipped is not None:
            row[mode] = asdict(Outcome(SKIP, skipped))
            continue
        workdir = user_dir(ctx, base / mode)
        began = time.monotonic()
        try:
            outcome = RUNNERS[mode](ctx, spec, workdir)
        except StepError as exc:
            outcome = Outcome(ERROR, str(exc))
        except (OSError, subprocess.SubprocessError) as exc:
            outcome = Outcome(ERROR, f"harness: {exc}")
        outcome.seconds = round(time.monotonic() - began, 2)
        row[mode] = asdict(outcome)
        if outcome.status == PASS and not ctx.keep:
            # Images of passed runs are what a failure would be compared with, not
            # evidence: only failures keep theirs (a whole run would take 1.5 GB).
            shutil.rmtree(workdir, ignore_errors=True)
            if "jobdir" in outcome.details:
                shutil.rmtree(outcome.details["jobdir"], ignore_errors=True)
        log(f"{name:28} {mode:8} {outcome.status:5} {outcome.reason[:160]}")
    return row


# -- set-up and report -----------------------------------------------------------


def make_store(root: Path, user: pwd.struct_passwd) -> None:
    """A private store laid out like a site's: root's and 0711, the user's own 0700
    folder made by the trusted side, as slurm-ckptd does."""
    root.mkdir(mode=0o711, parents=True)
    os.chown(root, 0, 0)
    os.chmod(root, 0o711)
    ensure_user_dir(root, user.pw_name, user.pw_uid, user.pw_gid)


def write_config(path: Path, store_root: Path, criu: Path, timeout: float) -> None:
    path.write_text(
        "# zdtm contract: a private store; a failed restore must fail, not start afresh.\n"
        f'[paths]\nstore_root = "{store_root}"\n\n'
        f'[criu]\nbinary = "{criu}"\n\n'
        f'[launcher]\nno_image = "fail"\npid_wait = {timeout:.0f}\n'
        f"dump_timeout = {timeout:.0f}\nstore_wait = 5\n"
    )
    path.chmod(0o644)


def cell(outcome: dict[str, Any] | None) -> str:
    return "-" if outcome is None else str(outcome["status"])


def markdown(rows: list[dict[str, Any]], modes: Sequence[str], meta: dict[str, Any]) -> str:
    lines = [
        f"# zdtm contract: CRIU {meta['criu_version']}, {meta['tests']} static tests "
        f"as {meta['user']}",
        "",
        "Written by `scripts/zdtm/contract.py`, which `make test` runs",
        "(tests/integration/test_zdtm_contract.py: it fails when a test plain CRIU",
        "passes does not pass through the launcher). Each test is started, checkpointed,",
        "killed, restored, and asked for its own verdict; `tests.txt` says why each",
        "static test left out is left out.",
        "",
        f"Run {meta['started']}, {meta['seconds']:.0f} s; kernel {meta['kernel']}. "
        + ", ".join(f"{mode}: {meta['passed'][mode]} PASS" for mode in modes),
        "",
        "| test | " + " | ".join(modes) + " | reason |",
        "|---|" + "---|" * len(modes) + "---|",
    ]
    for row in rows:
        reasons = []
        for mode in modes:
            outcome = row.get(mode)
            if outcome and outcome["status"] != PASS and outcome["reason"]:
                reasons.append(f"{mode}: {outcome['reason']}")
        # A reason shared by every mode (a skip) is said once.
        if len({r.split(": ", 1)[1] for r in reasons}) == 1 and len(reasons) == len(modes):
            reasons = [reasons[0].split(": ", 1)[1]]
        reason = "; ".join(reasons).replace("|", "\\|").replace("\n", " ")
        cells = " | ".join(cell(row.get(mode)) for mode in modes)
        lines.append(f"| {row['test']} | {cells} | {reason} |")
    return "\n".join(lines) + "\n"


def criu_version(criu: Path) -> str:
    out = subprocess.run([str(criu), "--version"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split()[1]
    return "unknown"


def find_static(root: Path) -> Path:
    found = sorted(root.glob("src/criu-*/test/zdtm/static"))
    if not found:
        raise SystemExit(f"no zdtm build under {root}: run scripts/zdtm/build.sh")
    return found[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("tests", nargs="*", help="tests to run (default: all of --list)")
    parser.add_argument("--list", type=Path, default=HERE / "tests.txt")
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    parser.add_argument("--markdown", type=Path, required=True, help="write the table here")
    parser.add_argument("--modes", default="plain,launcher", help=f"of {','.join(MODES)}")
    parser.add_argument("--user", default="ckpt-alice")
    parser.add_argument("--launcher", type=Path, default=DEFAULT_LAUNCHER)
    parser.add_argument("--criu", type=Path, default=PREFIX / "bin/criu-unpriv")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per step")
    parser.add_argument(
        "--keep", action="store_true", help="keep the folders and images of passed runs too"
    )
    parser.add_argument(
        "--clean", action="store_true", help="remove the run folder (images, logs) at the end"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: every test runs as --user, started with setpriv/runuser")
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: a comma-separated list of {', '.join(MODES)}")
    names = args.tests or read_list(args.list)
    user = pwd.getpwnam(args.user)
    static = find_static(ZDTM_ROOT)
    libc = ctypes.CDLL(None, use_errno=True)
    # The orphans of killed trees, and restored trees criu detaches, become ours.
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    os.umask(0o022)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = ZDTM_ROOT / "run" / stamp
    run_dir.mkdir(mode=0o755, parents=True)
    run_dir.parent.chmod(0o755)
    store_root = run_dir / "store"
    make_store(store_root, user)
    config = run_dir / "config.toml"
    write_config(config, store_root, args.criu, args.timeout)
    ctx = Context(
        user=user,
        static=static,
        subreaper=ZDTM_ROOT / "bin/subreaper",
        criu=args.criu,
        launcher=args.launcher,
        run_dir=run_dir,
        store_root=store_root,
        config=config,
        timeout=args.timeout,
        keep=args.keep,
    )
    began = time.monotonic()
    log(f"zdtm contract: {len(names)} tests, modes {','.join(modes)}, in {run_dir}")
    rows = [run_one(ctx, name, modes) for name in names]
    meta: dict[str, Any] = {
        "criu_version": criu_version(args.criu),
        "criu": str(args.criu),
        "launcher": str(args.launcher),
        "user": user.pw_name,
        "tests": len(names),
        "kernel": os.uname().release,
        "started": stamp,
        "seconds": round(time.monotonic() - began, 1),
        "passed": {m: sum(1 for r in rows if r[m]["status"] == PASS) for m in modes},
        "counts": {
            m: {s: sum(1 for r in rows if r[m]["status"] == s) for s in (PASS, FAIL, ERROR, SKIP)}
            for m in modes
        },
        "run_dir": str(run_dir),
    }
    args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    args.markdown.write_text(markdown(rows, modes, meta))
    log(f"done in {meta['seconds']:.0f} s: {meta['counts']}")
    if args.clean:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
