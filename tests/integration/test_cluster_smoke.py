"""The local test cluster behaves like a real one: jobs run as their user, a dead
node's requeueable job restarts on the other node."""

from __future__ import annotations

import pwd
import time
from pathlib import Path

import pytest

from .slurm_helpers import SlurmTestClient

NODES = {"node1", "node2"}


@pytest.mark.core
def test_job_runs_to_completed_as_the_test_user(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    script = '#!/bin/bash\necho "user=$(id -un) node=$SLURMD_NODENAME job=$SLURM_JOB_ID"\n'
    job = cluster.submit(script, user=test_user.pw_name, cwd=user_dir, args=["--output=out-%j.txt"])

    record = cluster.wait_for(job, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=60)

    assert record["JobState"] == "COMPLETED", record
    assert record["ExitCode"] == "0:0"
    output = (user_dir / f"out-{job}.txt").read_text()
    assert output.strip() == f"user={test_user.pw_name} node={record['NodeList']} job={job}"
    assert record["NodeList"] in NODES


@pytest.mark.core
def test_killed_node_requeues_the_job_on_the_other_node(
    cluster: SlurmTestClient, test_user: pwd.struct_passwd, user_dir: Path
) -> None:
    script = (
        "#!/bin/bash\n"
        'echo "run restart=${SLURM_RESTART_COUNT:-0} node=$SLURMD_NODENAME"\n'
        "sleep 600\n"
    )
    job = cluster.submit(
        script,
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--requeue", "--open-mode=append", "--output=out-%j.txt"],
    )
    first = cluster.wait_for(job, {"RUNNING"}, timeout=60)
    dead = first["NodeList"]
    (other,) = NODES - {dead}
    try:
        started = time.monotonic()
        cluster.kill_node(dead)

        second = cluster.wait_for(
            job, {"RUNNING"}, timeout=90, where={"Restarts": "1", "NodeList": other}
        )
        elapsed = time.monotonic() - started
        out = user_dir / f"out-{job}.txt"
        deadline = time.monotonic() + 15
        while f"restart=1 node={other}" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)

        assert out.read_text().splitlines() == [
            f"run restart=0 node={dead}",
            f"run restart=1 node={other}",
        ]
        assert second["Restarts"] == "1"
        print(f"node kill to job running on {other}: {elapsed:.1f}s")
    finally:
        cluster.cancel(job)
        cluster.start_node(dead)
    # The node is back in service once its slurmd has registered again.
    in_service = {"idle", "mix", "alloc"}
    deadline = time.monotonic() + 30
    while cluster.node_state(dead) not in in_service and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cluster.node_state(dead) in in_service
