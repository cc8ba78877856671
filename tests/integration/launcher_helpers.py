"""Drive the installed launcher as an ordinary user, outside Slurm, the way slurmstepd does:
the launcher is the process we start (as the user), stdout is a file opened in append
mode, SLURM_JOB_ID and SLURM_RESTART_COUNT are in its environment."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slurm_ckpt.dump.criu import tree_pids
from slurm_ckpt.store.folders import ensure_user_dir
from slurm_ckpt.store.layout import JobDir

LAUNCHER = (
    Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt")) / "venv/bin/slurm-ckpt-launch"
)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def kill_tree(root: int) -> None:
    """Kill a process tree at once, as a node failure would."""
    pids = tree_pids(root)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def make_store(*users: pwd.struct_passwd) -> Path:
    """A private image store laid out like a site's: the root root's and 0711 (users pass
    through it, cannot write or list it), with each user's own 0700 folder made by the
    trusted side, as slurm-ckptd does. Remove it with remove_store."""
    base = Path("/tmp/slurm-ckpt-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    root = base / f"store-{os.urandom(4).hex()}"
    root.mkdir(mode=0o711)
    os.chown(root, 0, 0)
    os.chmod(root, 0o711)
    for user in users:
        ensure_user_dir(root, user.pw_name, user.pw_uid, user.pw_gid)
    return root


def remove_store(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def count_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


class LauncherRun:
    """One start of the launcher as `user`, for job `job_id`."""

    def __init__(
        self,
        user: pwd.struct_passwd,
        workdir: Path,
        store_root: Path,
        job_id: int,
        command: list[str],
        *,
        restart_count: int = 0,
        stdout_name: str = "stdout.txt",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.user = user
        self.workdir = workdir
        self.job_id = job_id
        self.jobdir = JobDir(store_root, user.pw_name, job_id).path
        self.stdout = workdir / stdout_name
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": user.pw_dir,
            "USER": user.pw_name,
            "SLURM_JOB_ID": str(job_id),
            "SLURM_RESTART_COUNT": str(restart_count),
            "SLURM_CKPT_PATHS_STORE_ROOT": str(store_root),
            "SLURM_CKPT_CONFIG": "/dev/null",
            **(settings or {}),  # SLURM_CKPT_<SECTION>_<KEY>
        }
        # slurmstepd opens the job's output write-only with O_APPEND.
        out_fd = os.open(self.stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.chown(self.stdout, user.pw_uid, user.pw_gid)
        try:
            # setpriv execs in place (runuser would fork), so signals reach the launcher.
            self.proc = subprocess.Popen(
                [
                    "setpriv",
                    f"--reuid={user.pw_uid}",
                    f"--regid={user.pw_gid}",
                    "--init-groups",
                    "--",
                    str(LAUNCHER),
                    *command,
                ],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_fd,
                stderr=out_fd,
            )
        finally:
            os.close(out_fd)

    def result(self, seq: int) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.jobdir / "results" / f"{seq:06d}.json").read_text()))
        except FileNotFoundError:
            return None

    def request_checkpoint(self, seq: int, timeout: float = 60) -> dict[str, Any]:
        """Ask for checkpoint `seq` as the service will, and wait for its result."""
        request = self.jobdir / "request.json"
        tmp = request.with_suffix(".tmp")
        tmp.write_text(json.dumps({"job_id": self.job_id, "seq": seq, "kind": "periodic"}))
        tmp.rename(request)
        os.kill(self.proc.pid, signal.SIGUSR1)
        return dict(wait_until(lambda: self.result(seq), timeout, f"result of checkpoint {seq}"))

    def kill(self) -> None:
        kill_tree(self.proc.pid)
        self.proc.wait()

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def restart_report(self, restart_count: int) -> dict[str, Any]:
        path = self.jobdir / "restarts" / f"{restart_count:04d}.json"
        return dict(json.loads(path.read_text()))

    def log(self) -> str:
        try:
            return (self.jobdir / "launcher.log").read_text()
        except FileNotFoundError:
            return "(no launcher.log)"
