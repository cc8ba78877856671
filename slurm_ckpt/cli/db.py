"""`ckpt-admin db`: create, upgrade and inspect the catalog's schema.

Like every command, it reads the settings of `ckpt-admin --config` (catalog.url,
admin.group) and leaves its errors to the one handler in main.py, so their
exit codes are those of cli.errors (5: the catalog cannot be reached or
migrated, 10: a bad configuration).
"""

from __future__ import annotations

import click

from slurm_ckpt.cli.context import App, pass_app
from slurm_ckpt.db import migrate
from slurm_ckpt.db.session import shown_url


@click.group("db")
@click.option(
    "--url",
    metavar="URL",
    help="Catalog database URL (default: catalog.url from the configuration).",
)
@pass_app
def db(app: App, url: str | None) -> None:
    """Create, upgrade and inspect the catalog's schema."""
    app.catalog_url_override = url


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_app
def upgrade(app: App, revision: str) -> None:
    """Create the catalog or bring its schema up to date.

    A SQLite catalog is left readable by root and the admin group only.
    """
    url = app.catalog_url
    now = migrate.upgrade(url, revision, group=app.settings.admin.group)
    click.echo(f"catalog {shown_url(url)}: at revision {now}")


@db.command()
@pass_app
def current(app: App) -> None:
    """Show the catalog's schema revision and whether it is the newest."""
    url = app.catalog_url
    now = migrate.current(url)
    head = migrate.head()
    if now is None:
        state = "empty: run `ckpt-admin db upgrade`"
    elif now == head:
        state = "up to date"
    else:
        state = f"behind {head}: run `ckpt-admin db upgrade`"
    click.echo(f"catalog {shown_url(url)}: revision {now or 'none'} ({state})")
