"""Load: 40 checkpointed jobs at once, a checkpoint every 15 s each, for 90 s
(`make bench-load`: 5 minutes, SLURM_CKPT_LOAD_SECONDS), on the local cluster with the real
service, launcher and CRIU."""

from __future__ import annotations

import json
import os
import pwd
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.states import CheckpointState

from .launcher_helpers import wait_until
from .slurm_helpers import SlurmTestClient

JOBS = 40
INTERVAL = 15
# make test's run is long enough for every job's gaps to show; the benchmark's longer.
RUN_SECONDS = int(os.environ.get("SLURM_CKPT_LOAD_SECONDS", "90"))
PID_FILE = Path("/var/lib/slurm-ckpt-cluster/slurm-ckptd.pid")


def metric(name: str, port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match.group(1))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(RUN_SECONDS + 300)
def test_forty_jobs_checkpointed_every_fifteen_seconds(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    settings = load_settings(Path("/etc/slurm-ckpt/config.toml"))
    port = settings.service.metrics_port
    cap = settings.service.max_concurrent_checkpoints
    script = (
        f"#!/bin/bash\n#SBATCH --checkpoint={INTERVAL}s\n"
        "exec 3>>counter-$SLURM_JOB_ID.txt\n"
        "for i in $(seq 1 2000); do echo $i >&3; sleep 0.5; done\n"
    )
    jobs = [
        cluster.submit(script, user=test_user.pw_name, cwd=user_dir, args=["--output=/dev/null"])
        for _ in range(JOBS)
    ]
    peak = 0.0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, metric("slurm_ckpt_checkpoints_in_flight", port))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        wait_until(
            lambda: all(cluster.job(j)["JobState"] == "RUNNING" for j in jobs),
            120,
            f"all {JOBS} jobs running at once",
        )
        pid = int(PID_FILE.read_text())
        cpu0, started = cpu_seconds(pid), time.monotonic()
        watcher.start()
        time.sleep(RUN_SECONDS)
        cpu = cpu_seconds(pid) - cpu0
        elapsed = time.monotonic() - started
        rss_mib = (
            int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
            / 1024
        )  # type: ignore[union-attr]
        still_running = sum(cluster.job(j)["JobState"] == "RUNNING" for j in jobs)
    finally:
        stop.set()
        for job in jobs:
            cluster.cancel(job)

    assert still_running == JOBS
    assert peak <= cap, f"{peak} checkpoints in flight, cap {cap}"
    worst_gap = 0.0
    counts: list[int] = []
    failed = 0
    reasons: set[str] = set()
    for job in jobs:
        record = service_catalog.find_job("ckptdev", job)
        assert record is not None
        taken = sorted(c.created_at for c in service_catalog.checkpoints(record.id))
        gaps = [(b - a).total_seconds() for a, b in zip(taken, taken[1:], strict=False)]
        # Every interval plus its jitter (10 %) plus waiting for a slot.
        assert len(taken) >= RUN_SECONDS // INTERVAL - 3, (job, len(taken))
        counts.append(len(taken))
        worst_gap = max([worst_gap, *gaps])
        for checkpoint in service_catalog.checkpoints(record.id):
            if checkpoint.state == CheckpointState.FAILED:
                failed += 1
                assert checkpoint.error, f"job {job}: checkpoint {checkpoint.seq} failed silently"
                reasons.add(checkpoint.error[:120])
    gap_bound = INTERVAL * 1.1 + 10
    assert worst_gap <= gap_bound, f"a job waited {worst_gap:.0f}s between checkpoints"
    # `make bench-load` keeps these numbers for docs/benchmarks.md.
    results = os.environ.get("SLURM_CKPT_LOAD_RESULTS")
    if results:
        Path(results).write_text(
            json.dumps(
                {
                    "params": {"jobs": JOBS, "interval_s": INTERVAL, "run_s": RUN_SECONDS},
                    "results": {
                        "min_checkpoints": min(counts),
                        "max_checkpoints": max(counts),
                        "worst_gap_s": worst_gap,
                        "gap_bound_s": gap_bound,
                        "peak_in_flight": peak,
                        "cap": cap,
                        "per_store_cap": settings.service.max_checkpoints_per_store,
                        "failed": failed,
                        "failed_reasons": sorted(reasons),
                        "cpu_fraction": cpu / elapsed,
                        "rss_mib": rss_mib,
                    },
                }
            )
        )
    print(
        f"\n{JOBS} jobs x {RUN_SECONDS}s: service CPU {cpu / elapsed * 100:.1f} % of a core, "
        f"RSS {rss_mib:.0f} MiB, peak in flight {peak:.0f} (cap {cap}), "
        f"worst gap {worst_gap:.1f}s"
    )
