"""Drive the Alembic migrations in db/migrations/ from code: no alembic.ini needed.

In a source tree the migrations are db/migrations/ at the top; an installed
wheel carries them as slurm_ckpt/db/migrations/ (see pyproject.toml).
"""

from __future__ import annotations

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


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for the catalog at `url` (default: the configured catalog.url)."""
    if url is None:
        from slurm_ckpt.config import get_settings

        url = get_settings().catalog.url
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # env.py reads the URL from here; attributes avoid ConfigParser's % interpolation.
    config.attributes["url"] = normalise_url(url).render_as_string(hide_password=False)
    return config


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Bring the catalog's schema to `revision`; return the revision it is at afterwards."""
    config = alembic_config(url)
    _make_sqlite_dir(config.attributes["url"])
    _run(config, lambda: command.upgrade(config, revision))
    return current(url)


def downgrade(url: str | None, revision: str) -> str | None:
    """Take the catalog's schema back to `revision` ("base" drops everything)."""
    config = alembic_config(url)
    _run(config, lambda: command.downgrade(config, revision))
    return current(url)


def current(url: str | None = None) -> str | None:
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


def _make_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
