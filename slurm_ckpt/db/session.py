"""The one place that makes catalog engines and sessions, and turns driver errors into ours.

SQLite (the default, a file under the state directory) runs in WAL mode with
foreign keys on and a busy timeout; a write transaction starts with
`BEGIN IMMEDIATE` so two writers queue on the lock instead of failing halfway.
PostgreSQL is reached through psycopg 3; `postgresql://` URLs are read as
`postgresql+psycopg://`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from slurm_ckpt.errors import (
    CatalogBusy,
    CatalogConflict,
    CatalogError,
    CatalogSchemaError,
    CatalogUnavailable,
    CkptError,
)

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a SQLite writer waits for another one
DEFAULT_CONNECT_TIMEOUT = 10  # seconds to reach PostgreSQL before giving up
_WRITE_OPTION = "slurm_ckpt_write"
# PostgreSQL SQLSTATEs: undefined table/column mean "not migrated"; these mean "retry".
_PG_SCHEMA_STATES = {"42P01", "42703"}
_PG_CONFLICT_STATES = {"40001", "40P01", "55P03"}


def normalise_url(url: str | URL) -> URL:
    """Parse a catalog URL; plain `postgresql://` selects psycopg 3 (the driver we ship)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        raise CatalogUnavailable(f"catalog URL {url!s} is not a database URL: {err}") from err
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise CatalogUnavailable(
            f"catalog URL {shown_url(parsed)}: only sqlite and postgresql are supported"
        )
    return parsed


def shown_url(url: str | URL) -> str:
    """The URL for messages and logs, never with its password."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(
    url: str | URL,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    echo: bool = False,
) -> Engine:
    """Create an engine for the catalog at `url`. Connects lazily; raises CatalogUnavailable."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout, echo)
    try:
        return create_engine(
            parsed,
            echo=echo,
            pool_pre_ping=True,  # a connection the server dropped is replaced, not handed out
            connect_args={"connect_timeout": connect_timeout},
        )
    except ImportError as err:
        raise CatalogUnavailable(
            f"catalog {shown_url(parsed)}: its database driver is missing ({err}); "
            "install slurm-ckpt[postgres]"
        ) from err


def _sqlite_engine(url: URL, busy_timeout: float, echo: bool) -> Engine:
    memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {}
    if memory:
        # One shared connection, or every session would see its own empty database.
        kwargs["poolclass"] = StaticPool
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN itself (below); the driver's implicit one breaks
        # transactional DDL and savepoints.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads, then writes after another writer
        # committed, fails with SQLITE_BUSY at once; IMMEDIATE takes the lock first.
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """An engine and its session factories; `session()` is a translated transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = shown_url(engine.url)
        self.dialect = engine.dialect.name
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(
            engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back when it raises.

        Driver errors leave as CatalogError subclasses (see `translate_errors`).
        """
        factory = self._write if write else self._read
        with translate_errors(self.url), factory.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | URL, **engine_kwargs: Any) -> Database:
    """The catalog at `url` (callers pass the configured `catalog.url`); see `make_engine`."""
    return Database(make_engine(url, **engine_kwargs))


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors raised inside the block into CatalogError subclasses."""
    try:
        yield
    except CkptError:
        raise
    except exc.SQLAlchemyError as err:
        raise translate(err, url) from err


def translate(err: exc.SQLAlchemyError, url: str) -> CatalogError:
    """The domain error for one SQLAlchemy error, with a one-line reason."""
    reason = _reason(err)
    state = getattr(getattr(err, "orig", None), "sqlstate", None)
    if isinstance(err, exc.IntegrityError):
        return CatalogConflict(f"catalog {url}: write refused by a constraint: {reason}")
    if isinstance(err, exc.DBAPIError) and state in _PG_CONFLICT_STATES:
        return CatalogConflict(f"catalog {url}: concurrent writer, retry: {reason}")
    if isinstance(err, exc.DBAPIError) and (
        state in _PG_SCHEMA_STATES or "no such table" in reason or "no such column" in reason
    ):
        return CatalogSchemaError(
            f"catalog {url}: schema missing or out of date ({reason}): run `ckpt-admin db upgrade`"
        )
    if isinstance(err, exc.OperationalError) and "database is locked" in reason:
        return CatalogBusy(f"catalog {url}: locked by another writer past the busy timeout")
    if isinstance(err, exc.OperationalError | exc.InterfaceError | exc.DisconnectionError):
        return CatalogUnavailable(f"catalog {url} unavailable: {reason}")
    if isinstance(err, exc.TimeoutError):
        return CatalogUnavailable(f"catalog {url}: no free connection: {reason}")
    return CatalogError(f"catalog {url}: {reason}")


def _reason(err: exc.SQLAlchemyError) -> str:
    source: BaseException = getattr(err, "orig", None) or err
    lines = [line.strip() for line in str(source).splitlines() if line.strip()]
    return lines[0] if lines else type(source).__name__
