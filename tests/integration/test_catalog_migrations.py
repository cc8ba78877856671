"""The migrations build exactly the models' schema, on both databases, and go down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Column, Integer, MetaData, inspect, text

from slurm_ckpt.cli.main import cli
from slurm_ckpt.config import get_settings
from slurm_ckpt.db import migrate
from slurm_ckpt.db.catalog import Catalog
from slurm_ckpt.db.models import Base
from slurm_ckpt.db.session import make_engine, open_database
from slurm_ckpt.db.states import CheckpointKind
from slurm_ckpt.errors import CatalogConflict, CatalogSchemaError

from .catalog_fixtures import (  # noqa: F401 (fixtures: pytest finds them by name)
    NOW,
    empty_url_fixture,
    postgres_server_fixture,
)

TABLES = {"jobs", "checkpoints", "events", "actions"}
# Rows as revision 0004 knew them: written before checkpoints.kind and jobs.chained_runs.
_AT = "'2026-03-01 12:00:00'"
BEFORE_0005 = (
    "INSERT INTO jobs (id, cluster, slurm_job_id, user_name, uid, interval_seconds, state, "
    f"restart_count, created_at, updated_at) VALUES (1, 'test', 1001, 'ckpt-alice', 1001, 60, "
    f"'RUNNING', 1, {_AT}, {_AT})",
    "INSERT INTO checkpoints (job_id, seq, state, store_path, total_bytes, file_count, "
    "manifest_checksum, job_restart_count, created_at, completed_at) VALUES "
    f"(1, 1, 'VALID', '/store/1', 10, 1, 'xxh3_128:00', 0, {_AT}, {_AT})",
    "INSERT INTO checkpoints (job_id, seq, state, error, job_restart_count, created_at, "
    f"completed_at) VALUES (1, 2, 'FAILED', 'x', 1, {_AT}, {_AT})",
    f"INSERT INTO events (job_id, kind, detail, created_at) VALUES (1, 'requeued', 'x', {_AT})",
    # A run chained before the upgrade: 0005 counts it into jobs.chained_runs.
    "INSERT INTO events (job_id, kind, detail, created_at) VALUES "
    f"(1, 'requeued', 'walltime chaining, run 1: from checkpoint 1', {_AT})",
    "INSERT INTO events (job_id, kind, detail, created_at) VALUES "
    f"(1, 'requeue_refused', 'walltime chaining, run 2: requeue failed', {_AT})",
)


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


def test_migrations_take_the_url_given_not_the_configured_one(
    settings_url: str, tmp_path: Path
) -> None:
    given = f"sqlite:///{tmp_path}/given.db"
    assert migrate.upgrade(given) == migrate.head()
    assert migrate.current(given) == migrate.head()
    assert migrate.current(settings_url) is None


def test_env_py_without_a_url_refuses_whatever_the_config_says(settings_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate.migrations_dir()))
    with pytest.raises(CatalogSchemaError, match="need the database URL"):
        command.upgrade(config, "head")
    assert migrate.current(settings_url) is None


def test_0005_keeps_existing_rows_with_their_defaults_and_goes_back(empty_url: str) -> None:
    assert migrate.upgrade(empty_url, "0004") == "0004"
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            for statement in BEFORE_0005:
                conn.execute(text(statement))
        assert migrate.upgrade(empty_url) == migrate.head()
        db = open_database(empty_url)
        try:
            catalog = Catalog(db)
            assert catalog.get_job(1).chained_runs == 1
            assert {c.kind for c in catalog.checkpoints(1)} == {CheckpointKind.PERIODIC}
            # The new columns work on the migrated rows, and the old index still holds.
            assert (
                catalog.record_requeue(
                    1, "walltime chaining, run 2", NOW, chained=True
                ).chained_runs
                == 2
            )
            assert catalog.request_checkpoint(1, NOW, CheckpointKind.ADMIN).seq == 3
            with pytest.raises(CatalogConflict, match="in flight"):
                catalog.request_checkpoint(1, NOW)
            with pytest.raises(CatalogConflict), db.session(write=True) as session:
                session.execute(text("UPDATE checkpoints SET kind = 'bogus'"))
        finally:
            db.dispose()

        assert migrate.downgrade(empty_url, "0004") == "0004"
        names = inspect(engine)
        assert "kind" not in {c["name"] for c in names.get_columns("checkpoints")}
        assert "chained_runs" not in {c["name"] for c in names.get_columns("jobs")}
        with engine.connect() as conn:
            counts = [
                conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("jobs", "checkpoints", "events")
            ]
        # Nothing lost on the way down (a table copy on SQLite would cascade-delete).
        assert counts == [1, 3, 4]
        assert migrate.upgrade(empty_url) == migrate.head()
        assert schema_diff(empty_url) == []
    finally:
        engine.dispose()


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
def test_cli_failure_is_one_line_and_exit_5(
    settings_url: str, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 5  # a catalog problem, as the README's table says
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("ckpt-admin: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert "secret" not in result.stderr
