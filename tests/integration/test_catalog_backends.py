"""What only one database has: PostgreSQL row locks and lost connections, SQLite's file lock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog, DumpResult
from slurm_ckpt.db.models import Checkpoint
from slurm_ckpt.db.session import Database, open_database
from slurm_ckpt.db.states import CheckpointState
from slurm_ckpt.errors import CatalogBusy, CatalogError, CatalogUnavailable, IllegalTransition

from .catalog_fixtures import (  # noqa: F401 (fixtures: pytest finds them by name)
    NOW,
    new_job,
    postgres_catalog_url_fixture,
    postgres_server_fixture,
    track,
)

DUMP = DumpResult("/store/x/1", 10, 1, 1.0, 0.1, "4.1", "xxh3_128:" + "b" * 32)


@pytest.fixture
def pg(postgres_catalog_url: str) -> Iterator[Database]:
    db = open_database(postgres_catalog_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/catalog.db"
    migrate.upgrade(url)
    return url


def fresh_job_id() -> int:
    return uuid.uuid4().int % 2_000_000_000 + 1


def test_postgresql_row_lock_makes_a_second_instance_wait(
    pg: Database, postgres_catalog_url: str
) -> None:
    catalog = Catalog(pg)
    job = track(catalog, new_job(fresh_job_id()), NOW)
    cp = catalog.request_checkpoint(job.id, NOW)
    other = Catalog(open_database(postgres_catalog_url))
    outcome: list[object] = []

    def second_instance() -> None:
        try:
            outcome.append(other.mark_failed(cp.id, "deadline", NOW))
        except CatalogError as err:
            outcome.append(err)

    try:
        with pg.session(write=True) as session:
            session.execute(select(Checkpoint).where(Checkpoint.id == cp.id).with_for_update())
            waiter = threading.Thread(target=second_instance)
            waiter.start()
            time.sleep(0.5)
            assert waiter.is_alive(), f"second instance did not wait for the row lock: {outcome}"
            session.execute(
                update(Checkpoint)
                .where(Checkpoint.id == cp.id)
                .values(
                    state="VALID",
                    completed_at=NOW,
                    store_path="/store/x/1",
                    manifest_checksum="xxh3_128:" + "b" * 32,
                    total_bytes=10,
                    file_count=1,
                )
            )
        waiter.join(timeout=30)
    finally:
        other.db.dispose()
    assert len(outcome) == 1
    assert isinstance(outcome[0], IllegalTransition)
    assert outcome[0].current == "VALID"
    assert catalog.get_checkpoint(cp.id).state == CheckpointState.VALID


def test_postgresql_lost_connection_is_unavailable_then_recovers(pg: Database) -> None:
    catalog = Catalog(pg)
    job = track(catalog, new_job(fresh_job_id()), NOW)
    with pytest.raises(CatalogUnavailable) as info, pg.session(write=True) as session:
        session.execute(update(Checkpoint).values(error="half-written"))
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer = open_database(str(pg.engine.url.render_as_string(hide_password=False)))
        try:
            with killer.session() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        finally:
            killer.dispose()
        session.execute(text("SELECT 1"))
    assert len(str(info.value).splitlines()) == 1
    # The pool notices the dead connection; the next call works.
    assert catalog.get_job(job.id) == job


def test_postgresql_unreachable_is_one_clear_error() -> None:
    db = open_database("postgresql://postgres@127.0.0.1:1/none", connect_timeout=2)
    try:
        with pytest.raises(CatalogUnavailable, match=r"127\.0\.0\.1:1/none unavailable"):
            Catalog(db).job_summaries()
    finally:
        db.dispose()


def test_sqlite_writer_past_the_busy_timeout_is_busy(sqlite_url: str) -> None:
    holder = open_database(sqlite_url)
    waiter = open_database(sqlite_url, busy_timeout=0.2)
    try:
        with holder.session(write=True) as session:
            session.execute(text("UPDATE jobs SET restart_count = 0"))
            started = time.monotonic()
            with pytest.raises(CatalogBusy, match="locked by another writer"):
                track(Catalog(waiter), new_job(), NOW)
            assert 0.15 < time.monotonic() - started < 5
            # In WAL mode a reader is not blocked by the open write transaction.
            assert Catalog(waiter).find_job("test", 1001) is None
        # The failed write left nothing behind, and once the lock is free it works.
        assert Catalog(waiter).job_summaries() == []
        track(Catalog(waiter), new_job(), NOW)
    finally:
        holder.dispose()
        waiter.dispose()


def test_sqlite_file_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/absent/catalog.db")
    try:
        with pytest.raises(CatalogUnavailable, match="unable to open database file"):
            Catalog(db).job_summaries()
    finally:
        db.dispose()
