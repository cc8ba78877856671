"""Catalog fixtures: one suite runs on SQLite (a temporary file) and on the real PostgreSQL.

The PostgreSQL side makes its own databases with random names and drops them
at the end, so parallel runs never share one. An unreachable server fails the
tests with a clear message; it never skips them.

A test module imports the `*_fixture` functions it needs by name, with those
they depend on (pytest looks fixtures up from the test's module); each is
registered under its `name=`, so a test's `catalog` argument does not shadow
an import.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog, CheckpointRecord, JobRecord, NewJob
from slurm_ckpt.db.checkpoints import move
from slurm_ckpt.db.session import Database, open_database
from slurm_ckpt.db.states import CheckpointState

BACKENDS = ("sqlite", "postgresql")
PG_URL_ENV = "SLURM_CKPT_TEST_POSTGRES_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_job(slurm_job_id: int = 1001, **fields: object) -> NewJob:
    values: dict[str, object] = {
        "cluster": "test",
        "slurm_job_id": slurm_job_id,
        "user_name": "ckpt-alice",
        "uid": 1001,
        "interval_seconds": 1800,
    }
    values.update(fields)
    return NewJob(**values)  # type: ignore[arg-type]


def track(catalog: Catalog, job: NewJob, now: datetime) -> JobRecord:
    """Start tracking one job (the catalog tracks batches: a sync's new jobs together)."""
    return catalog.track_jobs([job], now)[0]


def mark_obsolete(catalog: Catalog, checkpoint_id: int) -> CheckpointRecord:
    """Make one checkpoint OBSOLETE through the guarded move `apply_retention` makes.

    The catalog has no call for this (retention decides what becomes obsolete);
    tests use it to reach OBSOLETE, or try it where the state machine refuses it.
    """
    with catalog.db.session(write=True) as session:
        return move(session, checkpoint_id, CheckpointState.OBSOLETE)


class PostgresServer:
    """Creates and drops throw-away databases on the test PostgreSQL server."""

    def __init__(self, admin_url: URL) -> None:
        self.admin_url = admin_url
        # pre_ping: the reliability suite restarts the server while this engine lives.
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self._created: list[str] = []

    def check(self) -> None:
        try:
            with self._admin.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception as err:
            reason = str(err).splitlines()[0]
        # Failed outside the except block, so the report is this one message.
        shown = self.admin_url.render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL at {shown} is unreachable ({reason}): start it "
            f"(scripts/setup-system.sh) or point ${PG_URL_ENV} at a server where this user "
            "may create databases",
            pytrace=False,
        )

    def create_database(self) -> str:
        name = f"slurm_ckpt_test_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self._admin.connect() as conn:
            for name in self._created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    server = PostgresServer(make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)))
    server.check()
    yield server
    server.drop_all()


@pytest.fixture(scope="session", name="postgres_catalog_url")
def postgres_catalog_url_fixture(postgres_server: PostgresServer) -> str:
    """A migrated PostgreSQL catalog shared by the session; emptied before each test."""
    url = postgres_server.create_database()
    migrate.upgrade(url)
    return url


def _empty_tables(url: str) -> None:
    db = open_database(url)
    try:
        with db.session(write=True) as session:
            session.execute(text("TRUNCATE actions, events, checkpoints, jobs RESTART IDENTITY"))
    finally:
        db.dispose()


@pytest.fixture(params=BACKENDS, name="catalog_url")
def catalog_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an up-to-date, empty catalog on each database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/state/catalog.db"
        migrate.upgrade(url)
        return url
    url = str(request.getfixturevalue("postgres_catalog_url"))
    _empty_tables(url)
    return url


@pytest.fixture(params=BACKENDS, name="empty_url")
def empty_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database with no schema at all, on each database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/empty.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(name="open_instance")
def open_instance_fixture(catalog_url: str) -> Iterator[Callable[..., Catalog]]:
    """Open further catalogs on the same database, as another service instance would."""
    opened: list[Database] = []

    def _open(**engine_kwargs: object) -> Catalog:
        db = open_database(catalog_url, **engine_kwargs)
        opened.append(db)
        return Catalog(db)

    yield _open
    for db in opened:
        db.dispose()


@pytest.fixture(name="database")
def database_fixture(catalog_url: str) -> Iterator[Database]:
    db = open_database(catalog_url)
    yield db
    db.dispose()


@pytest.fixture(name="catalog")
def catalog_fixture(database: Database) -> Catalog:
    return Catalog(database)
