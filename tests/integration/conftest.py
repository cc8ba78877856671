"""Fixtures for tests against the real local cluster, CRIU and PostgreSQL.

The cluster is brought up and down with scripts/cluster.sh, the same script
the Makefile uses. A cluster that was already up is left running.
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
from slurm_ckpt.config import load_settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.session import open_database

from .slurm_helpers import REPO, SlurmTestClient

TEST_USERS = ("ckpt-alice", "ckpt-bob")
CRIU_PREFIX = Path(os.environ.get("SLURM_CKPT_PREFIX", "/opt/slurm-ckpt"))


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


SERVICE_CONFIG = Path("/etc/slurm-ckpt/config.toml")


@pytest.fixture(scope="session")
def service_catalog(cluster: SlurmTestClient) -> Iterator[Catalog]:
    """The catalog of the cluster's slurm-ckptd (its configuration, written by cluster.sh)."""
    db = open_database(load_settings(SERVICE_CONFIG).catalog.url)
    yield Catalog(db)
    db.dispose()


@pytest.fixture(scope="session")
def service_store_root(cluster: SlurmTestClient) -> Path:
    return load_settings(SERVICE_CONFIG).paths.store_root
