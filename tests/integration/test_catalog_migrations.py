"""The migrations build exactly the models' schema, on both databases, and go down and up again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Column, Integer, MetaData, inspect

from slurm_ckpt.cli.main import cli
from slurm_ckpt.config import get_settings
from slurm_ckpt.db import migrate
from slurm_ckpt.db.models import Base
from slurm_ckpt.db.session import make_engine

from .catalog_fixtures import *  # noqa: F403

TABLES = {"jobs", "checkpoints", "events", "actions"}


def schema_diff(url: str, metadata: MetaData = Base.metadata) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.fixture
def settings_url(monkeypatch: pytest.MonkeyPatch, empty_url: str) -> Iterator[str]:
    """Make `empty_url` the configured catalog.url, as a site's config would."""
    monkeypatch.setenv("SLURM_CKPT_CATALOG_URL", empty_url)
    monkeypatch.delenv("SLURM_CKPT_CONFIG", raising=False)
    get_settings.cache_clear()
    yield empty_url
    get_settings.cache_clear()


def test_migrations_agree_with_the_models(empty_url: str) -> None:
    assert migrate.current(empty_url) is None
    assert migrate.upgrade(empty_url) == migrate.head()
    assert tables(empty_url) == TABLES
    assert schema_diff(empty_url) == []


def test_the_diff_sees_a_model_change(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["jobs"].append_column(Column("added_later", Integer))
    assert [d[0] for d in schema_diff(empty_url, changed)] == ["add_column"]  # type: ignore[index]


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert migrate.downgrade(empty_url, "base") is None
    assert tables(empty_url) == set()
    assert migrate.upgrade(empty_url) == migrate.head()
    assert tables(empty_url) == TABLES
    assert schema_diff(empty_url) == []


def test_env_py_reads_the_project_config(settings_url: str) -> None:
    assert migrate.upgrade() == migrate.head()
    assert migrate.current(settings_url) == migrate.head()


def test_cli_db_upgrade_and_current(settings_url: str) -> None:
    runner = CliRunner()
    before = runner.invoke(cli, ["db", "current"])
    assert before.exit_code == 0, before.output
    assert "revision none (empty: run `ckpt-admin db upgrade`)" in before.stdout
    done = runner.invoke(cli, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().endswith(f"at revision {migrate.head()}")
    after = runner.invoke(cli, ["db", "current"])
    assert f"revision {migrate.head()} (up to date)" in after.stdout
    assert "password" not in after.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["db", "--url", "postgresql://u:secret@127.0.0.1:1/x", "current"], "unavailable"),
        (["db", "--url", "not a url", "upgrade"], "is not a database URL"),
        (["db", "upgrade", "--revision", "nope"], "migration refused"),
    ],
)
def test_cli_failure_is_one_line_and_exit_1(
    settings_url: str, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("ckpt-admin db: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert "secret" not in result.stderr
