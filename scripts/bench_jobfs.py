#!/usr/bin/env python3
"""Benchmark: what acting in a job's folder with the owner's identity costs, per operation.

The same operation (read one small result file through the hostile reader) done
three ways, side by side in one run:
- "root, no identity": in the calling thread with the service's own rights (what
  the service did before; unsafe, the floor);
- "thread per operation" (shipped, store/jobfs.py): a fresh thread takes the
  owner's filesystem ids and groups, does the operation and ends;
- "worker process per user": a process forked once per user, dropped to the
  user for good (setresuid), answering requests over a pipe.

Run as root: the job folder belongs to a test user (ckpt-alice by default).

usage: bench_jobfs.py [--ops 2000] [--user ckpt-alice] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

from slurm_ckpt.store import untrusted
from slurm_ckpt.store.folders import ensure_user_dir
from slurm_ckpt.store.jobfs import JobFiles, JobRef

JOB_ID = 4242


def _read_direct(root: Path, user: str) -> bytes | None:
    fd = os.open(root / user / str(JOB_ID) / "results", untrusted.DIR_FLAGS)
    try:
        return untrusted.read_file(fd, "000001.json", 65536, owner=None)
    finally:
        os.close(fd)


def _worker(root: Path, user: str, uid: int, gid: int) -> Callable[[], bytes | None]:
    """The alternative design: one process per user, as the user, over a pipe."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(to_child_w)
        os.close(to_parent_r)
        os.setgroups([gid])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        while os.read(to_child_r, 1):
            data = _read_direct(root, user) or b""
            os.write(to_parent_w, len(data).to_bytes(4, "big") + data)
        os._exit(0)
    os.close(to_child_r)
    os.close(to_parent_w)

    def ask() -> bytes | None:
        os.write(to_child_w, b"r")
        size = int.from_bytes(os.read(to_parent_r, 4), "big")
        return os.read(to_parent_r, size)

    ask.close = lambda: (os.close(to_child_w), os.waitpid(pid, 0))  # type: ignore[attr-defined]
    return ask


def _per_op_us(op: Callable[[], object], ops: int) -> float:
    """Median over 5 rounds of the mean time of one operation, in microseconds."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(ops):
            op()
        rounds.append((time.perf_counter() - started) / ops * 1e6)
    return statistics.median(rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--user", default="ckpt-alice")
    benchlib.add_json_option(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_jobfs: run as root (the job folder is a test user's)", file=sys.stderr)
        return 2
    entry = pwd.getpwnam(args.user)
    base = Path(tempfile.mkdtemp(prefix="bench-jobfs-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        ensure_user_dir(base, args.user, entry.pw_uid, entry.pw_gid)
        results = base / args.user / str(JOB_ID) / "results"
        results.mkdir(parents=True, mode=0o700)
        (results / "000001.json").write_text(json.dumps({"seq": 1, "ok": True}))
        for path in (results.parent, results, results / "000001.json"):
            os.chown(path, entry.pw_uid, entry.pw_gid)

        files = JobFiles(base)
        ref = JobRef(args.user, JOB_ID, entry.pw_uid)
        worker = _worker(base, args.user, entry.pw_uid, entry.pw_gid)
        rows = {
            "root, no identity": _per_op_us(lambda: _read_direct(base, args.user), args.ops),
            "thread per operation": _per_op_us(lambda: files.read_result(ref, 1), args.ops),
            "worker process per user": _per_op_us(worker, args.ops),
        }
        worker.close()  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| how | one operation |\n|---|---|")
    for name, us in rows.items():
        print(f"| {name} | {us:.0f} µs |")
    benchlib.write_results(
        args.json,
        "jobfs",
        {"ops": args.ops, "operation": "read results/000001.json"},
        {"rows": [{"name": k, "per_op_us": v} for k, v in rows.items()]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
