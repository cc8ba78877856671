"""Engines, URLs, types and error translation, on a SQLite file (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.models import UTCDateTime
from slurm_ckpt.db.session import make_engine, normalise_url, open_database, shown_url, translate
from slurm_ckpt.errors import (
    CatalogBusy,
    CatalogConflict,
    CatalogError,
    CatalogSchemaError,
    CatalogUnavailable,
)


def test_plain_postgresql_url_selects_psycopg3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:////var/x.db").drivername == "sqlite"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "nonsense"])
def test_unsupported_or_broken_urls_are_refused(url: str) -> None:
    with pytest.raises(CatalogUnavailable):
        normalise_url(url)


def test_shown_url_hides_the_password() -> None:
    assert "hunter2" not in shown_url("postgresql+psycopg://u:hunter2@h/db")


def test_utc_datetime_round_trip_and_refusals() -> None:
    kind = UTCDateTime()
    sqlite = make_engine("sqlite://").dialect
    local = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    stored = kind.process_bind_param(local, sqlite)
    assert stored == datetime(2026, 1, 1, 12, 0)  # naive UTC in SQLite
    back = kind.process_result_value(stored, sqlite)
    assert back == local
    assert back is not None and back.tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        kind.process_bind_param(datetime(2026, 1, 1), sqlite)


def test_in_memory_catalog_shares_one_database(tmp_path: Path) -> None:
    db = open_database("sqlite://")
    try:
        with db.session(write=True) as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
        with db.session() as session:
            assert session.execute(text("SELECT count(*) FROM t")).scalar() == 0
    finally:
        db.dispose()


def test_sqlite_file_catalog_from_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/deep/state/catalog.db"
    assert migrate.upgrade(url) == migrate.head()
    assert (tmp_path / "deep" / "state" / "catalog.db").exists()
    db = open_database(url)
    try:
        assert Catalog(db).job_summaries() == []
    finally:
        db.dispose()


class _Orig(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (exc.IntegrityError("x", {}, _Orig("UNIQUE constraint failed")), CatalogConflict),
        (exc.OperationalError("x", {}, _Orig("database is locked")), CatalogBusy),
        (exc.OperationalError("x", {}, _Orig("no such table: jobs")), CatalogSchemaError),
        (exc.ProgrammingError("x", {}, _Orig('relation "jobs"', "42P01")), CatalogSchemaError),
        (exc.OperationalError("x", {}, _Orig("deadlock detected", "40P01")), CatalogConflict),
        (
            exc.OperationalError("x", {}, _Orig("server closed the connection\nmore")),
            CatalogUnavailable,
        ),
        (exc.InterfaceError("x", {}, _Orig("connection already closed")), CatalogUnavailable),
        (exc.TimeoutError("QueuePool limit reached"), CatalogUnavailable),
        (exc.DataError("x", {}, _Orig("value too long")), CatalogError),
    ],
)
def test_driver_errors_become_domain_errors(err: exc.SQLAlchemyError, expected: type) -> None:
    translated = translate(err, "sqlite:///x.db")
    assert type(translated) is expected
    assert len(str(translated).splitlines()) == 1
    assert "sqlite:///x.db" in str(translated)


def test_a_missing_database_driver_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from slurm_ckpt.db import session as session_module

    def no_driver(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'psycopg'")

    monkeypatch.setattr(session_module, "create_engine", no_driver)
    with pytest.raises(CatalogUnavailable) as err:
        session_module.make_engine("postgresql://ckpt@db.example/catalog")
    assert "install slurm-ckpt[postgres]" in str(err.value)
    assert "\n" not in str(err.value)
