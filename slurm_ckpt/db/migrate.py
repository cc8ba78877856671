"""Drive the Alembic migrations in db/migrations/ from code: no alembic.ini needed.

Every function takes the catalog's URL: this module never reads the settings
(callers pass `catalog.url`), so it works on any database it is pointed at.

In a source tree the migrations are db/migrations/ at the top; an installed
wheel carries them as slurm_ckpt/db/migrations/ (see pyproject.toml).
"""

from __future__ import annotations

import contextlib
import grp
import os
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from slurm_ckpt.db.session import normalise_url, open_database, shown_url, translate_errors
from slurm_ckpt.errors import CatalogSchemaError

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (_HERE / "migrations", _HERE.parent.parent / "db" / "migrations")


def migrations_dir() -> Path:
    """The folder holding env.py and versions/; raises CatalogSchemaError when missing."""
    for candidate in _CANDIDATES:
        if (candidate / "env.py").is_file():
            return candidate
    tried = ", ".join(str(c) for c in _CANDIDATES)
    raise CatalogSchemaError(f"catalog migrations not found (looked in {tried})")


def alembic_config(url: str) -> Config:
    """An Alembic Config for the catalog at `url`."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # env.py reads the URL from here; attributes avoid ConfigParser's % interpolation.
    config.attributes["url"] = normalise_url(url).render_as_string(hide_password=False)
    return config


def upgrade(url: str, revision: str = "head", *, group: str | None = None) -> str | None:
    """Bring the catalog's schema to `revision`; return the revision it is at afterwards.

    A SQLite file is created readable by its owner only; with `group` (the admin
    group), see `restrict_sqlite_file`.
    """
    config = alembic_config(url)
    _make_sqlite_file(config.attributes["url"])
    _run(config, lambda: command.upgrade(config, revision))
    if group is not None:
        restrict_sqlite_file(config.attributes["url"], group)
    return current(url)


def downgrade(url: str, revision: str) -> str | None:
    """Take the catalog's schema back to `revision` ("base" drops everything)."""
    config = alembic_config(url)
    _run(config, lambda: command.downgrade(config, revision))
    return current(url)


def current(url: str) -> str | None:
    """The revision the catalog is at, None for an empty (never upgraded) database."""
    config = alembic_config(url)
    db = open_database(config.attributes["url"])
    try:
        with db.session() as session:
            context = MigrationContext.configure(session.connection())
            return context.get_current_revision()
    finally:
        db.dispose()


def head() -> str:
    """The newest revision the code knows."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    revision = script.get_current_head()
    if revision is None:
        raise CatalogSchemaError(f"no migration found in {migrations_dir()}")
    return revision


def _run(config: Config, action: Callable[[], None]) -> None:
    url = shown_url(config.attributes["url"])
    try:
        with translate_errors(url):
            action()
    except CommandError as err:
        raise CatalogSchemaError(f"catalog {url}: migration refused: {err}") from err


def restrict_sqlite_file(url: str, group: str) -> None:
    """Let only root and `group` read a SQLite catalog (and its -wal and -shm):
    0640 root:<group>, or 0600 when the group does not exist or we are not root.

    Users reach the catalog through the service's API, never the file: it holds
    every user's jobs, uids, nodes and errors. SQLite gives the -wal and -shm it
    makes later the database file's mode and owner.
    """
    path = _sqlite_path(url)
    if path is None:
        return
    try:
        gid: int | None = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = None
    if os.geteuid() != 0:
        gid = None  # only root may give a file to a group it is not in
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            if gid is not None:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, 0o640 if gid is not None else 0o600)
        finally:
            os.close(fd)


def _make_sqlite_file(url: str) -> None:
    # Made here, owner-only, before SQLite makes it with the umask's mode: a reader
    # who opened it in between would keep reading it after any chmod.
    path = _sqlite_path(url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)
