"""Fixtures for tests against the real local cluster, CRIU and PostgreSQL.

The cluster itself (`cluster`, brought up and down with scripts/cluster.sh,
the same script the Makefile uses; a cluster that was already up is left
running), the test users and CRIU are fixtures of tests/conftest.py, which
tests/contract shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.session import open_database

# Re-exported for the tests that import them from here.
from tests.conftest import CRIU_PREFIX as CRIU_PREFIX
from tests.conftest import TEST_USERS as TEST_USERS

from .slurm_helpers import SlurmTestClient

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
