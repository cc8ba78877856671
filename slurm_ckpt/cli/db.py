"""`ckpt-admin db`: create, upgrade and inspect the catalog's schema."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from slurm_ckpt.db import migrate
from slurm_ckpt.db.session import shown_url
from slurm_ckpt.errors import CkptError


@click.group("db")
@click.option(
    "--url",
    metavar="URL",
    help="Catalog database URL (default: catalog.url from the configuration).",
)
@click.pass_context
def db(ctx: click.Context, url: str | None) -> None:
    """Create, upgrade and inspect the catalog's schema."""
    ctx.obj = url


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
def upgrade(url: str | None, revision: str) -> None:
    """Create the catalog or bring its schema up to date.

    A SQLite catalog is left readable by root and the admin group only.
    """
    from slurm_ckpt.config import get_settings

    with _one_line_errors():
        target = _url(url)
        now = migrate.upgrade(target, revision, group=get_settings().admin.group)
        click.echo(f"catalog {shown_url(target)}: at revision {now}")


@db.command()
@click.pass_obj
def current(url: str | None) -> None:
    """Show the catalog's schema revision and whether it is the newest."""
    with _one_line_errors():
        target = _url(url)
        now = migrate.current(target)
        head = migrate.head()
        if now is None:
            state = "empty: run `ckpt-admin db upgrade`"
        elif now == head:
            state = "up to date"
        else:
            state = f"behind {head}: run `ckpt-admin db upgrade`"
        click.echo(f"catalog {shown_url(target)}: revision {now or 'none'} ({state})")


def _url(url: str | None) -> str:
    if url is not None:
        return url
    from slurm_ckpt.config import get_settings

    return get_settings().catalog.url


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except CkptError as err:
        click.echo(f"ckpt-admin db: {err}", err=True)
        sys.exit(1)
