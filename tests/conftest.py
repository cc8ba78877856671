"""Test tiers, and the fixtures of the real machine that more than one folder uses.

Every test has exactly one tier: the marker it carries (the contract suites mark
each backend's parameter), else its folder's (tests/unit, tests/local,
tests/integration). The tier is also written into the JUnit report as the
property "tier", which scripts/check_test_report.py reads.

- unit: pure; no subprocess, no root.
- local: subprocesses, SQLite, temporary files, localhost sockets; no root, no
  cluster, no CRIU, no PostgreSQL (`make test-local`).
- integration: the real cluster, CRIU as the test users, PostgreSQL; as root.

The cluster, test-user and CRIU fixtures are defined here, once, because both
tests/integration and the real backends of tests/contract use them: a fixture
imported into two conftest files would be two fixtures, and the session would
bring the cluster up twice.
"""

from __future__ import annotations

import os
import pwd
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt import proc
from slurm_ckpt.dump import registry
from tests.integration.slurm_helpers import REPO, SlurmTestClient

# Every test may select the fake dump backend ("fake" as `launcher.dumper`),
# which the package never registers itself.
registry.register_fake()

TESTS = Path(__file__).parent
TIERS = ("unit", "local", "integration")

# Tests that take more than about 20 s, by reading (waits for node failures and
# restarts, checkpoint intervals, minutes-long loads): a module or one test.
SLOW = (
    "tests/integration/test_ansible.py",
    "tests/integration/test_load.py",
    "tests/integration/test_reliability.py",
    "tests/integration/test_transparency.py",
    "tests/integration/test_zdtm_contract.py",
    "tests/integration/test_cli_cluster.py::test_requeue_checkpoint_first_resumes_from_the_new_image",
    "tests/integration/test_cli_cluster.py::test_drain_moves_every_job_off_the_node_and_drains_it",
    "tests/integration/test_cluster_smoke.py::test_killed_node_requeues_the_job_on_the_other_node",
    "tests/integration/test_launcher_slurm.py::"
    "test_node_failure_job_resumes_on_the_other_node_with_identical_output",
    "tests/integration/test_security.py::"
    "test_checkpoints_swapped_after_publish_deletes_none_of_another_jobs_images",
    "tests/integration/test_security.py::"
    "test_a_hostile_restart_report_is_read_bounded_and_stops_nothing",
    "tests/integration/test_service.py::test_checkpointed_job_gets_valid_checkpoints_on_time",
    "tests/integration/test_service.py::test_node_failure_is_survived_with_identical_output",
    "tests/integration/test_service.py::test_killed_workload_is_requeued_by_policy_and_resumes",
    "tests/integration/test_service.py::"
    "test_service_killed_at_any_moment_leaves_a_consistent_catalog",
    "tests/integration/test_service_actions.py::"
    "test_requeue_with_checkpoint_first_resumes_with_identical_output",
    "tests/integration/test_service_actions.py::test_drain_moves_the_job_to_the_other_node",
)


def tier_of(item: pytest.Item) -> str:
    """The item's tier: its own tier marker, else its folder's. Raises UsageError
    for a test with two tier markers, or with none outside a tier's folder."""
    marked = {tier for tier in TIERS if item.get_closest_marker(tier) is not None}
    if len(marked) > 1:
        raise pytest.UsageError(f"{item.nodeid}: more than one tier: {', '.join(sorted(marked))}")
    if marked:
        return marked.pop()
    folder = Path(str(item.path)).relative_to(TESTS).parts[0]
    if folder not in TIERS:
        raise pytest.UsageError(
            f"{item.nodeid}: no tier: mark it (or its parameters) {', '.join(TIERS)}"
        )
    return folder


def is_slow(nodeid: str) -> bool:
    return any(nodeid == slow or nodeid.startswith((f"{slow}::", f"{slow}[")) for slow in SLOW)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        item.add_marker(getattr(pytest.mark, tier))
        item.user_properties.append(("tier", tier))
        if is_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)


# -- the real machine: tests/integration and the real backends of tests/contract --

TEST_USERS = ("ckpt-alice", "ckpt-bob")
CRIU_PREFIX = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt"))
# The Slurm the set-up selected (SLURM_RELEASE, scripts/slurm.sh): its commands
# answer every test, however pytest was started.
SLURM_HOME = CRIU_PREFIX / "slurm" / "current"
SLURM_PATH = f"{SLURM_HOME}/bin:{SLURM_HOME}/sbin"
os.environ["PATH"] = f"{SLURM_PATH}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def _cluster_script(*args: str, timeout: float = 120) -> proc.Completed:
    return proc.run([str(REPO / "scripts" / "cluster.sh"), *args], timeout=timeout, check=False)


@pytest.fixture(scope="session")
def root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "integration tests run as root (they start Slurm and act as test users): "
            "run `make test`"
        )


@pytest.fixture(scope="session")
def cluster(root: None) -> Iterator[SlurmTestClient]:
    """munged, slurmctld, the slurmd's and slurm-ckptd, up for the whole session;
    brought down at the end unless they were already up."""
    was_up = _cluster_script("status").returncode == 0
    if not was_up:
        up = _cluster_script("up")
        if up.returncode != 0:
            pytest.fail(f"cluster did not come up: {up.stderr.strip()}")
    yield SlurmTestClient()
    if not was_up:
        _cluster_script("down")


@pytest.fixture(scope="session")
def test_user(root: None) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USERS[0])
    except KeyError:
        pytest.fail(f"test user {TEST_USERS[0]} is missing: run scripts/setup-system.sh users")


@pytest.fixture
def user_dir(test_user: pwd.struct_passwd) -> Iterator[Path]:
    """A fresh folder owned by the test user, reachable by them (unlike tmp_path)."""
    base = Path("/tmp/slurm-ckpt-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    path = base / f"{test_user.pw_name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    os.chown(path, test_user.pw_uid, test_user.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def criu_unpriv(root: None) -> Path:
    path = CRIU_PREFIX / "bin" / "criu-unpriv"
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup-system.sh criu")
    return path


@pytest.fixture
def production_dumpers() -> Iterator[None]:
    """The dump registry as the package leaves it, without the fake, for one test."""
    registry.BACKENDS.remove("fake")
    try:
        yield
    finally:
        registry.register_fake()
