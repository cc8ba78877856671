"""`ckpt-admin db` on a SQLite catalog: it reads the settings of `--config` like
every command, and its errors are one line with the README's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_ckpt.db import migrate

from .test_cli_jobs import one_line_error, run


def config(folder: Path, body: str = "") -> Path:
    """A configuration whose catalog is `folder`/catalog.db (unless `body` sets one)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        f'[paths]\nstate_dir = "{folder}"\n'
        '[admin]\ngroup = "slurm-ckpt-test-no-such-group"\n' + body
    )
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """$SLURM_CKPT_CONFIG names another file: `--config` must win over it."""
    return {"SLURM_CKPT_CONFIG": str(config(tmp_path / "elsewhere"))}


def test_upgrade_and_current_use_the_catalog_of_the_config_option(
    tmp_path: Path, env: dict[str, str]
) -> None:
    chosen = config(tmp_path / "chosen")
    catalog = tmp_path / "chosen" / "catalog.db"
    before = run(env, "--config", str(chosen), "db", "current")
    assert before.exit_code == 0, before.output
    assert before.stdout == (
        f"catalog sqlite:///{catalog}: revision none (empty: run `ckpt-admin db upgrade`)\n"
    )
    done = run(env, "--config", str(chosen), "db", "upgrade")
    assert done.exit_code == 0, done.output
    assert done.stdout == f"catalog sqlite:///{catalog}: at revision {migrate.head()}\n"
    assert catalog.stat().st_mode & 0o777 == 0o600  # admin.group does not exist here
    after = run(env, "--config", str(chosen), "db", "current")
    assert f"revision {migrate.head()} (up to date)" in after.stdout
    # $SLURM_CKPT_CONFIG's catalog was never touched.
    assert not (tmp_path / "elsewhere" / "catalog.db").exists()


def test_the_environment_file_and_variables_apply_without_the_option(
    tmp_path: Path, env: dict[str, str]
) -> None:
    assert run(env, "db", "upgrade").exit_code == 0
    assert migrate.current(f"sqlite:///{tmp_path}/elsewhere/catalog.db") == migrate.head()
    url = f"sqlite:///{tmp_path}/from-env.db"
    assert run({**env, "SLURM_CKPT_CATALOG_URL": url}, "db", "upgrade").exit_code == 0
    assert migrate.current(url) == migrate.head()


def test_url_option_wins_over_the_configuration(tmp_path: Path, env: dict[str, str]) -> None:
    url = f"sqlite:///{tmp_path}/given.db"
    done = run(env, "db", "--url", url, "upgrade")
    assert done.exit_code == 0, done.output
    assert migrate.current(url) == migrate.head()
    assert not (tmp_path / "elsewhere" / "catalog.db").exists()


def test_an_unreachable_catalog_exits_5(tmp_path: Path, env: dict[str, str]) -> None:
    missing = f"sqlite:///{tmp_path}/missing/dir/catalog.db"
    one_line_error(run(env, "db", "--url", missing, "current"), 5, "unavailable")
    one_line_error(run(env, "db", "--url", "not a url", "upgrade"), 5, "is not a database URL")


def test_a_refused_migration_exits_5(env: dict[str, str]) -> None:
    one_line_error(run(env, "db", "upgrade", "--revision", "nope"), 5, "migration refused")


def test_a_bad_configuration_exits_10(tmp_path: Path, env: dict[str, str]) -> None:
    bad = config(tmp_path / "bad", "[catalog]\nurl = 1\n")
    one_line_error(run(env, "--config", str(bad), "db", "current"), 10, "catalog.url = 1")
    one_line_error(
        run(env, "--config", str(tmp_path / "absent.toml"), "db", "upgrade"), 10, "not found"
    )
    # An explicit URL needs no catalog.url, but upgrade still reads admin.group.
    given = f"sqlite:///{tmp_path}/given.db"
    assert run(env, "--config", str(bad), "db", "--url", given, "current").exit_code == 0
    one_line_error(
        run(env, "--config", str(bad), "db", "--url", given, "upgrade"), 10, "catalog.url"
    )
