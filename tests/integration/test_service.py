"""slurm-ckptd on the real cluster, with the real launcher, CRIU and catalog: jobs
submitted with --checkpoint are checkpointed on time, survive node failure and
their own crash, a user's scancel is respected, and a service killed at any
moment leaves the catalog consistent."""

from __future__ import annotations

import os
import pwd
import signal
import time
from pathlib import Path

import pytest

from slurm_ckpt import proc
from slurm_ckpt.db.catalog import Catalog, JobRecord
from slurm_ckpt.db.states import CheckpointState, EventKind
from slurm_ckpt.store.layout import JobDir
from slurm_ckpt.store.verify import published_images, verify_checkpoint

from .launcher_helpers import count_lines, wait_until
from .service_helpers import (
    NODES,
    counter_script,
    expected,
    restored,
    service_ctl,
    tracked,
    valid_count,
)
from .slurm_helpers import SlurmTestClient


def requested(catalog: Catalog, record: JobRecord) -> bool:
    return any(c.state == CheckpointState.REQUESTED for c in catalog.checkpoints(record.id))


@pytest.mark.core
def test_checkpointed_job_gets_valid_checkpoints_on_time(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
    service_store_root: Path,
) -> None:
    job = cluster.submit(
        counter_script(lines=60), user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"]
    )
    try:
        record = tracked(service_catalog, job)
        started = time.monotonic()
        wait_until(lambda: valid_count(service_catalog, record) >= 2, 60, "two VALID checkpoints")
        took = time.monotonic() - started
    finally:
        cluster.cancel(job)
    valid = service_catalog.valid_checkpoints(record.id)
    for checkpoint in valid:
        assert checkpoint.store_path is not None
        manifest = verify_checkpoint(Path(checkpoint.store_path), read_data=True)
        assert manifest.uid == test_user.pw_uid and manifest.job_id == job
        assert (checkpoint.total_bytes or 0) > 0 and checkpoint.criu_version
    jobdir = JobDir(service_store_root, test_user.pw_name, job)
    assert published_images(jobdir) == [c.seq for c in valid]
    print(f"two VALID checkpoints {took:.1f}s after the job was tracked")


@pytest.mark.core
def test_node_failure_is_survived_with_identical_output(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    job = cluster.submit(
        counter_script(), user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"]
    )
    first = cluster.wait_for(job, {"RUNNING"}, timeout=60)
    dead = first["NodeList"]
    (other,) = NODES - {dead}
    record = tracked(service_catalog, job)
    wait_until(lambda: valid_count(service_catalog, record) >= 1, 60, "a VALID checkpoint")
    try:
        cluster.kill_node(dead)
        final = cluster.wait_for(job, {"COMPLETED", "FAILED"}, timeout=180)
    finally:
        cluster.cancel(job)
        cluster.start_node(dead)

    assert final["JobState"] == "COMPLETED" and final["ExitCode"] == "0:0", final
    assert final["Restarts"] == "1" and final["NodeList"] == other
    assert (user_dir / "job.out").read_text() == expected()
    assert (user_dir / "counter.txt").read_text() == expected()
    restored(service_catalog, record.id)
    kinds = [e.kind for e in service_catalog.events(record.id)]
    assert EventKind.REQUEUED in kinds, kinds


@pytest.mark.core
def test_killed_workload_is_requeued_by_policy_and_resumes(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    # The script records its pid so the test can kill it like an OOM killer would.
    script = counter_script(extra="echo $$ > main.pid\n")
    job = cluster.submit(script, user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"])
    record = tracked(service_catalog, job)
    wait_until(lambda: valid_count(service_catalog, record) >= 1, 60, "a VALID checkpoint")
    wait_until(lambda: count_lines(user_dir / "counter.txt") >= 30, 60, "progress")
    try:
        os.kill(int((user_dir / "main.pid").read_text()), signal.SIGKILL)
        final = cluster.wait_for(job, {"COMPLETED"}, timeout=180, where={"Restarts": "1"})
    finally:
        cluster.cancel(job)

    assert final["ExitCode"] == "0:0"
    assert (user_dir / "counter.txt").read_text() == expected()
    assert (user_dir / "job.out").read_text() == expected()
    events = service_catalog.events(record.id)
    requeued = [e for e in events if e.kind == EventKind.REQUEUED]
    assert len(requeued) == 1 and "FAILED" in requeued[0].detail, events


@pytest.mark.core
def test_users_scancel_is_not_requeued(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    job = cluster.submit(
        counter_script(), user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"]
    )
    record = tracked(service_catalog, job)
    wait_until(lambda: valid_count(service_catalog, record) >= 1, 60, "a VALID checkpoint")

    proc.run(["runuser", "-u", test_user.pw_name, "--", "scancel", str(job)], timeout=30)

    refused = wait_until(
        lambda: [
            e for e in service_catalog.events(record.id) if e.kind == EventKind.REQUEUE_REFUSED
        ],
        30,
        "the refusal to be recorded",
    )
    assert "CANCELLED" in refused[0].detail
    time.sleep(5)  # several syncs: still not requeued
    assert cluster.job(job)["JobState"] == "CANCELLED"
    assert cluster.job(job)["Restarts"] == "0"


def test_service_killed_at_any_moment_leaves_a_consistent_catalog(
    cluster: SlurmTestClient,
    service_catalog: Catalog,
    test_user: pwd.struct_passwd,
    user_dir: Path,
    service_store_root: Path,
) -> None:
    # A larger image makes each dump last long enough to be cut off.
    script = counter_script(
        lines=600,
        extra=("python3 -c 'import time; b = bytearray(150 << 20); time.sleep(3600)' &\n"),
    )
    job = cluster.submit(script, user=test_user.pw_name, cwd=user_dir, args=["--output=job.out"])
    record = tracked(service_catalog, job)
    pid_file = Path("/var/lib/slurm-ckpt-cluster/slurm-ckptd.pid")
    try:
        for delay in (0.05, 0.2, 0.4):
            # Wait for a request to be in flight, then SIGKILL the service.
            wait_until(
                lambda: any(
                    c.state == CheckpointState.REQUESTED
                    for c in service_catalog.checkpoints(record.id)
                ),
                60,
                "a request in flight",
            )
            time.sleep(delay)
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            time.sleep(1)
            service_ctl("start-service")
        wait_until(
            lambda: (
                not any(
                    c.state == CheckpointState.REQUESTED
                    for c in service_catalog.checkpoints(record.id)
                )
                or None
            ),
            60,
            "no request left in flight",
        )
        wait_until(
            lambda: valid_count(service_catalog, record) >= 2, 60, "checkpoints after restarts"
        )
    finally:
        cluster.cancel(job)
        service_ctl("start-service")

    jobdir = JobDir(service_store_root, test_user.pw_name, job)
    for checkpoint in service_catalog.checkpoints(record.id):
        path = jobdir.checkpoint(checkpoint.seq)
        if checkpoint.state == CheckpointState.VALID:
            verify_checkpoint(path, read_data=True)  # nothing half-written is VALID
        elif checkpoint.state == CheckpointState.DELETED:
            assert not path.exists()
    valid = [c.seq for c in service_catalog.valid_checkpoints(record.id)]
    assert published_images(jobdir) == valid
    # Every committed folder is known to the catalog as VALID or on its way out.
    states = {c.seq: c.state for c in service_catalog.checkpoints(record.id)}
    for seq in jobdir.committed_seqs():
        assert states.get(seq) in (CheckpointState.VALID, CheckpointState.OBSOLETE), (seq, states)
