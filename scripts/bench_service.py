#!/usr/bin/env python3
"""Benchmark: slurm-ckptd with 10,000 tracked jobs, against a fake Slurm and the
fake dump backend (playing the launcher), with the real catalog (SQLite) and the
real scheduler.

Measures: one sync cycle (CPU and wall), the first one (tracking every job) and
steady ones; how late checkpoints start against their due time (their due times
are spread over the run, as 10,000 jobs with a one-hour interval would be); the
service's CPU and resident memory.

usage: bench_service.py [--jobs 10000] [--seconds 120] [--due-per-second 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import pwd
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchlib

from slurm_ckpt.config import load_settings
from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.session import open_database
from slurm_ckpt.dump import registry
from slurm_ckpt.dump.fake import FakeDumper
from slurm_ckpt.launcher.session import Job, Session
from slurm_ckpt.service.main import compose
from slurm_ckpt.slurm.base import JobInfo
from slurm_ckpt.slurm.fake import FakeSlurm
from slurm_ckpt.store.folders import ensure_job_dir, ensure_user_dir
from slurm_ckpt.store.layout import JobDir

INTERVAL = 3600
USER = pwd.getpwuid(os.geteuid()).pw_name  # the fake jobs are the caller's
FREE_PID = 10_000_000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument(
        "--due-per-second",
        type=float,
        default=3.0,
        help="checkpoints falling due per second (10,000 jobs / 1 h = 2.8)",
    )
    benchlib.add_json_option(parser)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="slurm-ckpt-bench-service."))
    store = work / "store"
    store.mkdir()
    ensure_user_dir(store, USER, os.geteuid(), os.getegid())
    url = f"sqlite:///{work}/catalog.db"
    registry.register_fake()  # a benchmark, like the tests, may select the fake
    settings = load_settings(
        env={
            "SLURM_CKPT_CONFIG": "/dev/null",
            "SLURM_CKPT_PATHS_STORE_ROOT": str(store),
            "SLURM_CKPT_CATALOG_URL": url,
            "SLURM_CKPT_SERVICE_POLL_INTERVAL": "5s",
            "SLURM_CKPT_LAUNCHER_DUMPER": "fake",
        }
    )
    migrate.upgrade(url)
    db = open_database(url)
    catalog = Catalog(db)
    slurm = FakeSlurm()

    def launcher(job_id: int, signal: str) -> None:
        jobdir = JobDir(store, USER, job_id)
        session = Session(
            Job(job_id, 0, ["/bin/sh"], jobdir.path / "x", []), jobdir, FakeDumper(), settings
        )
        session.child = FREE_PID
        session.criu_version = "fake-1"
        session.checkpoint()

    slurm.on_signal = launcher
    service = compose(settings, catalog, slurm, cluster="bench")
    due_jobs = int(args.due_per_second * args.seconds)
    print(f"setting up {args.jobs} jobs ({due_jobs} due during the {args.seconds:.0f} s run)...")

    def started(i: int, now: datetime) -> datetime:
        """Start times that make `due_jobs` jobs due at an even pace from 5 s after `now`."""
        if i < due_jobs:
            due = now + timedelta(seconds=5 + i / args.due_per_second)
        else:
            due = now + timedelta(seconds=args.seconds + 60 + i)
        return due - timedelta(seconds=INTERVAL)

    now = datetime.now(UTC) + timedelta(days=1)  # nothing due while syncs are measured
    for i in range(args.jobs):
        job_id = 100_000 + i
        slurm.add(
            JobInfo(
                job_id=job_id,
                state="RUNNING",
                user=USER,
                uid=os.getuid(),
                batch_host=f"node{i % 500}",
                node_list=f"node{i % 500}",
                start_time=started(i, now),
                time_limit=None,
                end_time=None,
                restarts=0,
                interval=INTERVAL,
            )
        )
        ensure_job_dir(store, USER, job_id)

    cpu0, wall0 = time.process_time(), time.monotonic()
    service.sync()
    first = (time.process_time() - cpu0, time.monotonic() - wall0)
    steady = []
    for _ in range(5):
        cpu0, wall0 = time.process_time(), time.monotonic()
        service.sync()
        steady.append((time.process_time() - cpu0, time.monotonic() - wall0))

    # A new instance, as after a restart, schedules every job again from its start
    # time, now chosen so that checkpoints fall due during the run.
    service = compose(settings, catalog, slurm, cluster="bench")
    now = datetime.now(UTC)
    for i in range(args.jobs):
        slurm.set(100_000 + i, start_time=started(i, now))
    # Record every delay the service measures (its histogram keeps no samples).
    delays: list[float] = []
    histogram = service.metrics.schedule_delay_seconds
    observe = histogram.observe

    def record(value: float, exemplar: object = None) -> None:
        delays.append(value)
        observe(value)

    histogram.observe = record  # type: ignore[method-assign,assignment]
    # The real scheduler from here on, as slurm-ckptd runs it.
    cpu0, wall0 = time.process_time(), time.monotonic()
    service.start()
    time.sleep(10)  # its first sync has scheduled every job
    window_end = datetime.now(UTC) + timedelta(seconds=args.seconds - 10)
    due_in_window = sum(
        1
        for job in service.schedule.scheduler.get_jobs()
        if job.id.startswith("ckpt-") and job.next_run_time < window_end
    ) + len(delays)
    time.sleep(args.seconds - 10)
    service.stop()
    run_cpu, run_wall = time.process_time() - cpu0, time.monotonic() - wall0

    taken = len(delays)
    print()
    print(f"| jobs tracked | {args.jobs} |")
    print("|---|---|")
    print(f"| first sync (tracks every job) | {first[0]:.2f} s CPU, {first[1]:.2f} s wall |")
    cpu = statistics.median(s[0] for s in steady)
    wall = statistics.median(s[1] for s in steady)
    print(f"| steady sync, median of 5 | {cpu:.2f} s CPU, {wall:.2f} s wall |")
    print(
        f"| checkpoints due in {args.seconds:.0f} s (with jitter) / started | "
        f"{due_in_window} / {taken} |"
    )
    if delays:
        print(
            f"| schedule delay p50 / p99 / max | {percentile(delays, 50):.2f} / "
            f"{percentile(delays, 99):.2f} / {max(delays):.2f} s (jitter excluded: "
            "due times include it) |"
        )
    print(f"| service CPU during the run | {run_cpu / run_wall * 100:.0f} % of one core |")
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| resident memory (max) | {max_rss:.0f} MiB |")
    benchlib.write_results(
        args.json,
        "service",
        {
            "jobs": args.jobs,
            "seconds": args.seconds,
            "due_per_second": args.due_per_second,
            "interval_s": INTERVAL,
            "poll_interval_s": settings.service.poll_interval.total_seconds(),
            "jitter_fraction": settings.service.jitter_fraction,
        },
        {
            "first_sync_cpu_s": first[0],
            "first_sync_wall_s": first[1],
            "steady_sync_cpu_s": cpu,
            "steady_sync_wall_s": wall,
            "due": due_in_window,
            "started": taken,
            "delay_p50_s": percentile(delays, 50) if delays else None,
            "delay_p99_s": percentile(delays, 99) if delays else None,
            "delay_max_s": max(delays) if delays else None,
            "cpu_fraction": run_cpu / run_wall,
            "max_rss_mib": max_rss,
        },
    )
    db.dispose()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
