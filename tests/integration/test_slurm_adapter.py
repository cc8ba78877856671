"""Contract tests of the Slurm adapter, against the real test cluster.

One suite, run for every adapter that can be used on this machine; the ones
that cannot (pyslurm where it does not import) must say why.
"""

from __future__ import annotations

import pwd
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.errors import JobNotFound, SlurmBackendUnavailable
from slurm_ckpt.slurm import registry
from slurm_ckpt.slurm.base import NodeInfo, SlurmAdapter

from .slurm_helpers import SlurmTestClient

UNKNOWN_JOB = 4_000_000_000 - 1
NODE = "node2"


@pytest.fixture(params=registry.available())
def adapter(request: pytest.FixtureRequest, cluster: SlurmTestClient) -> SlurmAdapter:
    settings = load_settings(env={"SLURM_CKPT_SLURM_RETRY_DELAY": "0.5"})
    return registry.create(request.param, settings.slurm)


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def test_every_registered_adapter_is_usable_or_says_why() -> None:
    available = set(registry.available())
    unavailable = registry.unavailable()
    assert "cli" in available
    assert available | set(unavailable) == set(registry.BACKENDS)
    assert not available & set(unavailable)
    settings = load_settings(env={})
    for name, reason in unavailable.items():
        assert reason
        with pytest.raises(SlurmBackendUnavailable) as err:
            registry.create(name, settings.slurm)
        assert err.value.reason == reason


def test_lists_checkpointed_jobs_only(
    adapter: SlurmAdapter,
    cluster: SlurmTestClient,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    script = "#!/bin/bash\necho hello\n"
    tagged = cluster.submit(
        script,
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--hold", "--checkpoint=2m", "--time=45"],
    )
    plain = cluster.submit(script, user=test_user.pw_name, cwd=user_dir, args=["--hold"])
    try:
        jobs = {job.job_id: job for job in adapter.list_checkpointed_jobs()}
    finally:
        cluster.cancel(tagged)
        cluster.cancel(plain)

    assert plain not in jobs
    job = jobs[tagged]
    assert job.state == "PENDING"
    assert (job.user, job.uid) == (test_user.pw_name, test_user.pw_uid)
    assert job.interval == 120
    assert job.time_limit == 45 * 60
    assert job.restarts == 0
    assert job.batch_host is None and job.node_list == ""


def test_signal_reaches_the_batch_process_only(
    adapter: SlurmAdapter,
    cluster: SlurmTestClient,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    script = (
        "#!/bin/bash\n"
        "bash -c 'trap \"echo child >> sig.txt\" USR1; while :; do sleep 0.2; done' &\n"
        "child=$!\n"
        "trap 'echo batch >> sig.txt; kill $child; exit 0' USR1\n"
        "touch ready\n"
        "while :; do sleep 0.2; done\n"
    )
    job = cluster.submit(script, user=test_user.pw_name, cwd=user_dir, args=["--output=/dev/null"])
    try:
        cluster.wait_for(job, {"RUNNING"}, timeout=60)
        poll(lambda: (user_dir / "ready").exists(), 30, "the batch script's trap")
        adapter.signal_batch(job, "USR1")
        cluster.wait_for(job, {"COMPLETED"}, timeout=30)
    finally:
        cluster.cancel(job)
    assert (user_dir / "sig.txt").read_text() == "batch\n"


def test_requeue_with_hold_and_release(
    adapter: SlurmAdapter,
    cluster: SlurmTestClient,
    test_user: pwd.struct_passwd,
    user_dir: Path,
) -> None:
    job = cluster.submit(
        "#!/bin/bash\nsleep 300\n",
        user=test_user.pw_name,
        cwd=user_dir,
        args=["--requeue", "--output=/dev/null"],
    )
    try:
        cluster.wait_for(job, {"RUNNING"}, timeout=60)
        adapter.requeue(job, hold=True)
        held = cluster.wait_for(job, {"PENDING"}, timeout=30, where={"Restarts": "1"})
        assert held["Priority"] == "0"

        adapter.release(job)
        released = cluster.job(job)
        assert released["Priority"] != "0"

        adapter.hold(job)
        assert cluster.job(job)["Priority"] == "0"
        adapter.release(job)
        assert cluster.job(job)["Priority"] != "0"

        # A plain requeue of the running job again.
        cluster.wait_for(job, {"RUNNING"}, timeout=60)
        adapter.requeue(job)
        cluster.wait_for(job, {"PENDING", "RUNNING"}, timeout=30, where={"Restarts": "2"})
    finally:
        cluster.cancel(job)


def test_unknown_job_is_job_not_found(adapter: SlurmAdapter) -> None:
    for request in (
        lambda: adapter.signal_batch(UNKNOWN_JOB),
        lambda: adapter.requeue(UNKNOWN_JOB),
        lambda: adapter.hold(UNKNOWN_JOB),
        lambda: adapter.release(UNKNOWN_JOB),
    ):
        with pytest.raises(JobNotFound) as err:
            request()
        assert err.value.job_id == UNKNOWN_JOB


def test_node_drained_and_back(adapter: SlurmAdapter, cluster: SlurmTestClient) -> None:
    # A drain, not a DOWN: jobs of other tests running on the node go on.
    # (A DOWN node is parsed from recorded output in tests/unit/test_slurm_parse.py.)
    reason = "slurm-ckpt contract test"
    before = adapter.node_states()
    assert {"node1", "node2"} <= set(before)
    assert all(isinstance(node, NodeInfo) for node in before.values())
    try:
        adapter.drain_node(NODE, reason)
        drained = adapter.node_states()[NODE]
        assert drained.is_draining and not drained.is_usable
        assert drained.reason == reason
    finally:
        adapter.resume_node(NODE)
    poll(lambda: adapter.node_states()[NODE].is_usable, 30, f"{NODE} to be usable again")
    assert adapter.node_states()[NODE].reason is None
