#!/usr/bin/env python3
"""Benchmark: from a node failure to the job running again, and the work lost.

On the local cluster (scripts/cluster.sh, with slurm-ckptd), one job with
`#SBATCH --checkpoint=INTERVAL` counts in steps of 0.5 s. Each round waits for
a checkpoint of the job's current run, then for a random moment within the
next interval, kills the job's node (slurmd, slurmstepd and the job, as in a
power loss) and times:

- Slurm's detection: the kill -> the node DOWN, and -> the job requeued;
- Slurm's restart: requeued -> the launcher started on the other node (the
  requeued job is held for the credential lifetime, cred_expire);
- ours: the launcher's start -> the job restored (interpreter start-up,
  verify, roll back, CRIU restore), as its restart report says, and the
  image's restore alone;
- the work lost: from the moment the restored image was taken to the kill.

At the end the job must finish with the output of an uninterrupted run.

Run as root: make bench-recovery [--rounds 5] [--interval 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import benchlib

from slurm_ckpt import proc
from slurm_ckpt.config import load_settings
from slurm_ckpt.store import layout
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.manifest import MANIFEST_NAME, Manifest

CLUSTER = benchlib.REPO / "scripts" / "cluster.sh"
USER = "ckpt-alice"
STEP_S = 0.5
POLL_S = 0.1

JOB = """#!/bin/bash
#SBATCH --checkpoint={interval}s
#SBATCH --output={out}
for i in $(seq 1 {steps}); do
    echo "step $i of {steps}"
    sleep {step}
done
"""


def run(*argv: str, timeout: float = 120) -> str:
    """The command's output; CommandFailed (with its stderr) when it fails."""
    return proc.run(argv, timeout=timeout).stdout


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll until check() holds; return the time it first held."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)
    return time.time()


def job_fields(job: int) -> dict[str, str]:
    out = run("scontrol", "show", "job", "-o", str(job))
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def node_down(node: str) -> bool:
    out = run("scontrol", "show", "node", "-o", node)
    state = next((i.split("=", 1)[1] for i in out.split() if i.startswith("State=")), "")
    return "DOWN" in state


def results(jobdir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted((jobdir / "results").glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being written
    return found


def image_time(result: dict[str, Any]) -> float:
    """When the image's state was taken: before the dump and the commit.

    Counting the whole dump makes the lost work an upper bound (by the dump
    time, a fraction of a second for this job)."""
    finished = datetime.fromisoformat(result["finished_at"]).timestamp()
    return float(finished - result["dump_seconds"] - result.get("commit_seconds", 0.0))


def image_bytes(jobdir: Path, seq: int) -> int:
    """The size of image `seq`, from its manifest (the result file does not carry it)."""
    folder = jobdir / layout.CHECKPOINTS / layout.seq_name(seq)
    return Manifest.from_json((folder / MANIFEST_NAME).read_bytes()).total_size


def one_round(
    job: int, jobdir: Path, out: Path, restarts: int, interval: float, rnd: random.Random
) -> dict[str, float]:
    started = time.time()
    wait_for(
        "a checkpoint of this run",
        lambda: any(r["ok"] and r["restart_count"] == restarts for r in results(jobdir)),
        timeout=interval * 3 + 60,
    )
    time.sleep(rnd.uniform(0, interval))
    node = job_fields(job)["BatchHost"]
    steps_at_kill = out.read_text().count("\n")
    run(str(CLUSTER), "kill-node", node)
    killed = time.time()
    down_at = 0.0

    def requeued() -> bool:
        nonlocal down_at
        if not down_at and node_down(node):
            down_at = time.time()
        return int(job_fields(job).get("Restarts", "0")) > restarts

    requeued_at = wait_for("the requeue", requeued, timeout=180)
    if not down_at:
        wait_for("the node DOWN", lambda: node_down(node), timeout=60)
        down_at = requeued_at  # seen DOWN no earlier than the requeue
    report_path = jobdir / "restarts" / f"{restarts + 1:04d}.json"
    wait_for("the launcher's restart report", report_path.exists, timeout=120)
    report = json.loads(report_path.read_text())
    if report["outcome"] != "restored":
        raise SystemExit(f"bench: restart {restarts + 1} was {report['outcome']}: {report}")
    restored_at = datetime.fromisoformat(report["at"]).timestamp()
    launched_at = restored_at - report["launcher_seconds"]
    image = next(r for r in results(jobdir) if r["ok"] and r["seq"] == report["seq"])
    run(str(CLUSTER), "start-node", node, timeout=120)
    row = {
        "waited_s": killed - started,
        "steps_at_kill": steps_at_kill,
        "node_down_s": down_at - killed,
        "requeued_s": requeued_at - killed,
        "slurm_restart_s": launched_at - requeued_at,
        "launched_s": launched_at - killed,
        "ours_s": report["launcher_seconds"],
        "restore_s": report["restore_seconds"],
        "restored_s": restored_at - killed,
        "lost_work_s": killed - image_time(image),
        "image_bytes": image_bytes(jobdir, report["seq"]),
    }
    print(
        f"round {restarts + 1}: node {node} killed; DOWN {row['node_down_s']:.1f} s, "
        f"requeued {row['requeued_s']:.1f} s, launcher started {row['launched_s']:.1f} s, restored "
        f"{row['restored_s']:.1f} s after the kill (ours {row['ours_s']:.2f} s, restore "
        f"{row['restore_s']:.2f} s); work lost {row['lost_work_s']:.1f} s",
        flush=True,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=int, default=10, help="checkpoint interval, seconds")
    parser.add_argument("--seed", type=int, default=1)
    benchlib.add_json_option(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: it kills and starts the local cluster's nodes")
    if args.rounds < 1 or args.interval < 10:
        parser.error("--rounds must be >= 1 and --interval >= 10 (the cluster's minimum)")
    settings = load_settings()
    was_up = proc.run([CLUSTER, "status"], timeout=60, check=False).returncode == 0
    if not was_up:
        run(str(CLUSTER), "up", timeout=300)
    work = Path(tempfile.mkdtemp(prefix="slurm-ckpt-bench-recovery."))
    uid = pwd.getpwnam(USER).pw_uid
    os.chown(work, uid, -1)
    work.chmod(0o755)
    # Enough work for every round: a checkpoint after the restore (an interval,
    # its jitter, admission), a random wait within an interval, the lost work.
    steps = int((args.rounds * (3 * args.interval + 10) + 30) / STEP_S)
    out = work / "count.out"
    script = work / "count.sh"
    script.write_text(JOB.format(interval=args.interval, out=out, steps=steps, step=STEP_S))
    os.chown(script, uid, -1)
    job = 0
    try:
        job = int(
            run("runuser", "-u", USER, "--", "sbatch", "--parsable", f"--chdir={work}", str(script))
        )
        print(f"job {job}: {steps} steps of {STEP_S} s, checkpoint every {args.interval} s")
        wait_for("the job to start", lambda: job_fields(job)["JobState"] == "RUNNING", 120)
        jobdir = JobDir(settings.paths.store_root, USER, job).path
        rnd = random.Random(args.seed)
        rows = [one_round(job, jobdir, out, r, args.interval, rnd) for r in range(args.rounds)]
        wait_for(
            "the job to finish",
            lambda: job_fields(job)["JobState"] in ("COMPLETED", "FAILED", "CANCELLED"),
            timeout=steps * STEP_S + 300,
        )
        state = job_fields(job)["JobState"]
        expected = "".join(f"step {i} of {steps}\n" for i in range(1, steps + 1))
        identical = out.read_text() == expected
        print(f"job {job} {state}; output identical to an uninterrupted run: {identical}")
        if state != "COMPLETED" or not identical:
            raise SystemExit("bench: the job did not finish with an uninterrupted run's output")
        job = 0
    finally:
        if job:
            proc.run(["scancel", str(job)], timeout=60, check=False)
        shutil.rmtree(work, ignore_errors=True)
        if not was_up:
            proc.run([CLUSTER, "down"], timeout=120, check=False)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print("\n| step (median of rounds) | seconds after the kill |\n|---|---|")
    for key in ("node_down_s", "requeued_s", "launched_s", "restored_s", "lost_work_s"):
        print(f"| {key} | {med(key):.2f} |")
    slurm_conf = Path("/etc/slurm/slurm.conf").read_text()
    timeouts = {
        k: v
        for line in slurm_conf.splitlines()
        if "=" in line and not line.startswith("#")
        for k, v in [line.strip().split("=", 1)]
        if k in ("SlurmdTimeout", "MessageTimeout", "AuthInfo", "SchedulerParameters")
    }
    release = proc.run(["scontrol", "--version"], timeout=30).stdout.split()[-1]
    benchlib.write_results(
        args.json,
        "recovery",
        {
            "rounds": args.rounds,
            "interval_s": args.interval,
            "step_s": STEP_S,
            "slurm": release,
            **timeouts,
        },
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
