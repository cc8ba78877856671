"""The Slurm adapter contract (slurm_ckpt/slurm/base.py), for every adapter: the
command-line one and pyslurm against the local cluster, and the fake Slurm the
service's unit tests run on, which must behave as they do.

pyslurm is skipped, with its import error, where it does not import (PyPI's
pyslurm does not build against Debian's Slurm 22.05): the one skip
scripts/check_test_report.py allows. What only the real cluster can show is in
tests/integration/test_slurm_adapter.py.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slurm_ckpt.errors import JobNotFound, SlurmRejected
from slurm_ckpt.slurm import registry, states
from slurm_ckpt.slurm.base import JobInfo, NodeInfo, SlurmAdapter
from slurm_ckpt.slurm.cli import CliSlurm
from slurm_ckpt.slurm.fake import FakeSlurm
from tests.integration.slurm_helpers import SlurmTestClient

from .slurm_worlds import ClusterWorld, FakeSlurmWorld, SlurmWorld, eventually

# Every adapter, with its tier; the registry's names plus the fake.
ADAPTERS = [
    pytest.param("cli", marks=pytest.mark.integration, id="cli"),
    pytest.param("pyslurm", marks=pytest.mark.integration, id="pyslurm"),
    pytest.param("fake", marks=pytest.mark.unit, id="fake"),
]
UNKNOWN_JOB = 4_000_000_000 - 1
NODE = "node2"


@dataclass
class Subject:
    adapter: SlurmAdapter
    world: SlurmWorld

    def job(self, job_id: int) -> JobInfo | None:
        """The job as one list_checkpointed_jobs shows it; None if it is not there."""
        return {j.job_id: j for j in self.adapter.list_checkpointed_jobs()}.get(job_id)

    def job_when(self, job_id: int, what: str, check: Callable[[JobInfo], bool]) -> JobInfo:
        """The job once `check(job)` holds, within the world's patience."""

        def seen() -> JobInfo | None:
            job = self.job(job_id)
            return job if job is not None and check(job) else None

        return eventually(seen, self.world.patience, f"job {job_id} {what}")


def real_adapter(name: str) -> SlurmAdapter:
    if name == "cli":
        return CliSlurm(retry_delay=0.5)
    try:
        from slurm_ckpt.slurm.pyslurm import PySlurm
    except ImportError as err:
        pytest.skip(f"pyslurm does not import: {err}")
    return PySlurm()


@pytest.fixture(params=ADAPTERS)
def slurm(request: pytest.FixtureRequest) -> Iterator[Subject]:
    world: SlurmWorld
    if request.param == "fake":
        fake = FakeSlurm()
        adapter: SlurmAdapter = fake
        world = FakeSlurmWorld(fake)
    else:
        adapter = real_adapter(request.param)
        # munged, slurmctld and the slurmd's come up with the session's `cluster`
        # fixture, which must be asked for: tests/contract runs before tests/integration.
        cluster: SlurmTestClient = request.getfixturevalue("cluster")
        user: pwd.struct_passwd = request.getfixturevalue("test_user")
        workdir: Path = request.getfixturevalue("user_dir")
        world = ClusterWorld(cluster, user, workdir)
    try:
        yield Subject(adapter, world)
    finally:
        world.close()


@pytest.mark.unit
def test_every_registered_adapter_is_in_the_contract() -> None:
    assert {p.values[0] for p in ADAPTERS} == {*registry.BACKENDS, "fake"}


# -- list_checkpointed_jobs ---------------------------------------------------


def test_lists_the_tagged_jobs_with_their_fields_and_no_others(slurm: Subject) -> None:
    world = slurm.world
    tagged = world.submit(checkpoint=120, time_limit=45, held=True)
    no_chain = world.submit(checkpoint=90, no_chain=True, held=True)
    plain = world.submit(checkpoint=None, held=True)

    jobs = {job.job_id: job for job in slurm.adapter.list_checkpointed_jobs()}

    assert plain not in jobs
    job = jobs[tagged]
    assert job.state == "PENDING" and not job.is_running and not job.is_finished
    assert (job.user, job.uid) == (world.user, world.uid)
    assert (job.interval, job.no_chain) == (120, False)
    assert job.time_limit == 45 * 60
    assert job.restarts == 0
    assert job.batch_host is None and job.node_list == ""
    assert job.start_time is None
    assert (jobs[no_chain].interval, jobs[no_chain].no_chain) == (90, True)


def test_a_running_job_says_where_and_since_when(slurm: Subject) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    job_id = slurm.world.submit(time_limit=30)
    slurm.world.wait_running(job_id)

    job = slurm.job_when(job_id, "running", lambda j: j.is_running)

    assert job.state == "RUNNING" and not job.is_finished
    assert job.batch_host in slurm.world.nodes and job.node_list == job.batch_host
    assert job.start_time is not None and job.start_time.tzinfo is not None
    assert before - timedelta(seconds=5) <= job.start_time <= datetime.now(UTC)
    assert job.end_time == job.start_time + timedelta(minutes=30)


def test_a_job_that_ended_stays_listed_with_its_final_state(slurm: Subject) -> None:
    job_id = slurm.world.submit(held=True)
    slurm.world.cancel(job_id)

    job = slurm.job_when(job_id, "cancelled", lambda j: j.state == "CANCELLED")

    assert job.is_finished and not job.is_running


# -- signal_batch ---------------------------------------------------------------


def test_a_signal_reaches_the_batch_process_only(slurm: Subject) -> None:
    job_id = slurm.world.submit_signal_recorder()

    slurm.adapter.signal_batch(job_id, "USR1")

    assert slurm.world.signals_recorded(job_id) == ["batch"]


def test_a_job_that_is_not_running_cannot_be_signalled(slurm: Subject) -> None:
    job_id = slurm.world.submit(held=True)
    with pytest.raises(SlurmRejected):
        slurm.adapter.signal_batch(job_id, "USR1")


# -- requeue ----------------------------------------------------------------------


def test_requeue_held_then_plain_counts_the_restarts(slurm: Subject) -> None:
    world = slurm.world
    job_id = world.submit()
    world.wait_running(job_id)

    slurm.adapter.requeue(job_id, hold=True)
    held = slurm.job_when(
        job_id, "requeued held", lambda j: j.state in states.PENDING and j.restarts == 1
    )
    assert held.batch_host is None
    assert world.is_held(job_id)

    world.release(job_id)
    assert not world.is_held(job_id)
    world.wait_running(job_id)
    slurm.adapter.requeue(job_id)
    slurm.job_when(
        job_id,
        "requeued again",
        lambda j: j.restarts == 2 and j.state in states.PENDING | states.RUNNING,
    )
    assert not world.is_held(job_id)


def test_a_pending_job_cannot_be_requeued(slurm: Subject) -> None:
    job_id = slurm.world.submit(held=True)
    with pytest.raises(SlurmRejected):
        slurm.adapter.requeue(job_id)
    job = slurm.job(job_id)
    assert job is not None and job.restarts == 0


def test_an_unknown_job_is_job_not_found(slurm: Subject) -> None:
    adapter = slurm.adapter
    requests: list[Callable[[], None]] = [
        lambda: adapter.signal_batch(UNKNOWN_JOB, "USR1"),
        lambda: adapter.requeue(UNKNOWN_JOB),
        lambda: adapter.requeue(UNKNOWN_JOB, hold=True),
    ]
    for request in requests:
        with pytest.raises(JobNotFound) as err:
            request()
        assert err.value.job_id == UNKNOWN_JOB


# -- nodes --------------------------------------------------------------------------


def test_node_states_lists_every_node(slurm: Subject) -> None:
    nodes = slurm.adapter.node_states()

    assert set(nodes) == set(slurm.world.nodes)
    for name, node in nodes.items():
        assert isinstance(node, NodeInfo) and node.name == name
        assert node.state in states.NODE_STATES


def test_a_drained_node_keeps_its_running_jobs_and_says_why(slurm: Subject) -> None:
    # A drain, not a DOWN: jobs of other tests running on the node go on. (A DOWN
    # node is parsed from recorded output in tests/unit/test_slurm_parse.py.)
    world, adapter = slurm.world, slurm.adapter
    reason = "slurm-ckpt contract test"
    job_id = world.submit(node=NODE)
    world.wait_running(job_id)
    try:
        adapter.drain_node(NODE, reason)
        drained = adapter.node_states()[NODE]
        assert drained.state in states.NODE_DRAINING and not drained.is_usable
        assert drained.reason == reason
        job = slurm.job(job_id)
        assert job is not None and job.is_running and job.batch_host == NODE
    finally:
        world.cancel(job_id)
        world.resume_node(NODE)

    def usable() -> NodeInfo | None:
        node = adapter.node_states()[NODE]
        return node if node.is_usable else None

    assert eventually(usable, world.patience, f"{NODE} usable again").reason is None


def test_an_unknown_node_cannot_be_drained(slurm: Subject) -> None:
    with pytest.raises(SlurmRejected):
        slurm.adapter.drain_node("node9", "slurm-ckpt contract test")
    assert set(slurm.adapter.node_states()) == set(slurm.world.nodes)
