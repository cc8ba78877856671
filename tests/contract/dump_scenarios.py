"""Dump-backend scenarios, run as a program: the user who runs it owns the process
tree, the images and the backend's work, as a job's user does (CRIU runs
unprivileged, as the test user). Each scenario prints one JSON object of what it
saw; tests/contract/test_dumpers.py judges it, the same way for every backend.

usage: dump_scenarios.py BACKEND SCENARIO WORKDIR [CRIU_BINARY]

Imports only the standard library and slurm_ckpt (not tests.*): it runs as the
test user, outside pytest.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slurm_ckpt import proc
from slurm_ckpt.dump.base import Dumper
from slurm_ckpt.dump.criu import CriuDumper, tree_pids
from slurm_ckpt.dump.fake import FakeDumper

COUNT = 100  # lines the tree's root writes, one every 50 ms
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# A root that counts into counter.txt and a child of it that only sleeps; the root
# ends its child and exits 0 once it has counted to COUNT.
TREE = f"""
import os, signal, time
child = os.fork()
if child == 0:
    while True:
        time.sleep(0.1)
with open("counter.txt", "a", buffering=1) as f:
    for i in range(1, {COUNT} + 1):
        f.write(f"{{i}}\\n")
        time.sleep(0.05)
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
"""

Result = dict[str, Any]


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


class Tree:
    """The process tree under test, in its own session, in `work`."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-c", TREE],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # Only the tree gets no_new_privs: unprivileged CRIU needs its file capability.
            preexec_fn=lambda: _prctl(PR_SET_NO_NEW_PRIVS, 1),
        )
        self.pid = self.proc.pid
        _until(lambda: self.lines() >= 10 and len(tree_pids(self.pid)) == 2, "the tree")
        self.pids = tree_pids(self.pid)

    def lines(self) -> int:
        try:
            return len((self.work / "counter.txt").read_text().split())
        except FileNotFoundError:
            return 0

    def runs_on(self) -> bool:
        """Still running and still counting."""
        before = self.lines()
        time.sleep(0.3)
        return self.proc.poll() is None and self.lines() > before

    def kill(self) -> None:
        """Killed at once, as a node failure would, and reaped, so its pids are free."""
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in self.pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        self.proc.wait()
        # The child was orphaned to us (the subreaper).
        for pid in self.pids[1:]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f}s")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _attempt(action: Callable[[], object]) -> Result:
    """What `action` raised: its class name and reason; error None if nothing."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the scenario reports it, the test judges
        return {"error": type(exc).__name__, "reason": str(getattr(exc, "reason", exc))}
    return {"error": None, "reason": ""}


def _images(work: Path, name: str = "images") -> Path:
    path = work / name
    path.mkdir(mode=0o700)
    return path


def capabilities(dumper: Dumper, work: Path) -> Result:
    caps = dumper.capabilities()
    return {
        "available": caps.available,
        "version": caps.version,
        "incremental": caps.incremental,
        "reason": caps.reason,
    }


def roundtrip(dumper: Dumper, work: Path) -> Result:
    """Dump a running tree, inspect its images, kill it, restore it, wait for it."""
    tree = Tree(work)
    images = _images(work)
    frozen: list[dict[str, Any]] = []

    def on_frozen(pids: list[int]) -> None:
        frozen.append({"pids": list(pids), "lines": tree.lines()})

    stats = dumper.dump(tree.pid, images, log_file=work / "dump.log", on_frozen=on_frozen)
    runs_on = tree.runs_on()
    info = dumper.inspect(images)
    tree.kill()
    killed_at = tree.lines()
    restored = dumper.restore(images, log_file=work / "restore.log")
    try:
        _, status = os.waitpid(restored.pid, 0)
        exit_code: int | None = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        exit_code = None  # not our child: nothing was started
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "tree": tree.pids,
        "seconds": stats.seconds,
        "frozen_seconds": stats.frozen_seconds,
        "frozen": frozen,
        "runs_on": runs_on,
        "image_files": sorted(p.name for p in images.iterdir()),
        "image_owners": sorted({p.stat().st_uid for p in images.iterdir()}),
        "inspect": {
            "pids": list(info.pids),
            "uids": sorted(info.uids),
            "gids": sorted(info.gids),
        },
        "killed_at": killed_at,
        "restored_pid": restored.pid,
        "restore_seconds": restored.seconds,
        "exit_code": exit_code,
        "lines": [int(n) for n in (work / "counter.txt").read_text().split()],
    }


def no_images(dumper: Dumper, work: Path) -> Result:
    """Inspect and restore a folder that is missing, and one that is empty."""
    missing, empty = work / "missing", _images(work, "empty")
    return {
        "inspect missing": _attempt(lambda: dumper.inspect(missing)),
        "restore missing": _attempt(lambda: dumper.restore(missing, log_file=work / "r1.log")),
        "inspect empty": _attempt(lambda: dumper.inspect(empty)),
        "restore empty": _attempt(lambda: dumper.restore(empty, log_file=work / "r2.log")),
    }


def corrupt_images(dumper: Dumper, work: Path) -> Result:
    """Images of a real tree, every file overwritten with junk, the tree gone."""
    tree = Tree(work)
    images = _images(work)
    dumper.dump(tree.pid, images, log_file=work / "dump.log")
    tree.kill()
    for path in images.iterdir():
        path.write_bytes(b"\x00not an image\xff" * 16)
    return {
        "inspect": _attempt(lambda: dumper.inspect(images)),
        "restore": _attempt(lambda: dumper.restore(images, log_file=work / "restore.log")),
        "left_running": [pid for pid in tree.pids if _alive(pid)],
    }


def dump_failures(dumper: Dumper, work: Path) -> Result:
    """A dump into a folder that does not exist, and one whose frozen hook fails."""
    tree = Tree(work)

    def hook(pids: list[int]) -> None:
        raise RuntimeError("the hook broke")

    try:
        missing = _attempt(
            lambda: dumper.dump(tree.pid, work / "missing", log_file=work / "d1.log")
        )
        failed_hook = _attempt(
            lambda: dumper.dump(tree.pid, _images(work), log_file=work / "d2.log", on_frozen=hook)
        )
        return {"missing": missing, "failed hook": failed_hook, "runs_on": tree.runs_on()}
    finally:
        tree.kill()


SCENARIOS: dict[str, Callable[[Dumper, Path], Result]] = {
    "capabilities": capabilities,
    "roundtrip": roundtrip,
    "no_images": no_images,
    "corrupt_images": corrupt_images,
    "dump_failures": dump_failures,
}


def run(
    backend: str, scenario: str, work: Path, *, user: str | None = None, binary: Path | None = None
) -> Result:
    """Run `scenario` in a new process (as `user` when given) and return what it saw.
    For the tests; raises AssertionError with the scenario's error output when it fails."""
    argv = [sys.executable, __file__, backend, scenario, str(work)]
    if binary is not None:
        argv.append(str(binary))
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    done = proc.run(argv, timeout=300, check=False)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in work.glob("*.log"))
    assert done.returncode == 0, f"scenario {scenario} failed:\n{done.stderr[-3000:]}{logs}"
    result: Result = json.loads(done.stdout)
    return result


def main() -> None:
    backend, scenario, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    dumper: Dumper
    if backend == "criu":
        dumper = CriuDumper(Path(sys.argv[4]), timeout=120)
    elif backend == "fake":
        dumper = FakeDumper()
    else:
        raise SystemExit(f"unknown backend {backend!r}")
    # Orphans of the tree come to us, so its pids are free again once it is killed.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    print(json.dumps(SCENARIOS[scenario](dumper, work)))


if __name__ == "__main__":
    main()
