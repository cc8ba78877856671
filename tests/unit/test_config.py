from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from slurm_ckpt import config
from slurm_ckpt.config import Settings, get_settings, load_settings

from .config_helpers import (
    assert_env_value_refused,
    assert_file_value_refused,
    assert_settings,
    load_error,
    write_config,
)


def test_defaults_when_the_default_file_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    s = load_settings(None, {})
    assert s.config_file is None
    assert_settings(
        s,
        {
            "paths.state_dir": Path("/var/lib/slurm-ckpt"),
            "paths.store_root": Path("/var/lib/slurm-ckpt/store"),
            "criu.binary": Path("/opt/slurm-ckpt/bin/criu-unpriv"),
            "criu.root_binary": Path("/opt/slurm-ckpt/sbin/criu"),
            "criu.group": "slurm-ckpt-criu",
            "catalog.url": "sqlite:////var/lib/slurm-ckpt/catalog.db",
            "slurm.adapter": "cli",
            "slurm.command_timeout": timedelta(seconds=30),
            "checkpoint.min_interval": timedelta(minutes=5),
            "retention.keep_last": 3,
            "retention.keep_within": None,
            "slurm.cluster": "cluster",
            "service.poll_interval": timedelta(seconds=5),
            "service.max_concurrent_checkpoints": 4,
            "service.log_level": "INFO",
        },
    )


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    s = load_settings(path, {})
    assert s.config_file == path
    assert s.service.max_concurrent_checkpoints == 4


def test_file_values(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [paths]
        state_dir = "/srv/ckpt"
        store_root = "/shared/ckpt"

        [criu]
        binary = "/usr/local/bin/criu-user"
        root_binary = "/usr/local/sbin/criu"

        [slurm]
        adapter = "pyslurm"
        command_timeout = 12.5

        [checkpoint]
        min_interval = "1h30m"

        [retention]
        keep_last = 0
        keep_within = "2d"

        [service]
        poll_interval = "0:30"
        max_concurrent_checkpoints = 16
        log_level = "DEBUG"
        """,
    )
    s = load_settings(path, {})
    assert_settings(
        s,
        {
            "paths.state_dir": Path("/srv/ckpt"),
            "paths.store_root": Path("/shared/ckpt"),
            "criu.binary": Path("/usr/local/bin/criu-user"),
            "criu.root_binary": Path("/usr/local/sbin/criu"),
            # The catalog follows the configured state_dir unless set itself.
            "catalog.url": "sqlite:////srv/ckpt/catalog.db",
            "slurm.adapter": "pyslurm",
            "slurm.command_timeout": timedelta(seconds=12.5),
            "checkpoint.min_interval": timedelta(hours=1, minutes=30),
            "retention.keep_last": 0,
            "retention.keep_within": timedelta(days=2),
            "service.poll_interval": timedelta(seconds=30),
            "service.max_concurrent_checkpoints": 16,
            "service.log_level": "DEBUG",
        },
    )


def test_seconds_may_be_integers_or_fractions(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, "[slurm]\ncommand_timeout = 7\n"), {})
    assert s.slurm.command_timeout == timedelta(seconds=7)
    s = load_settings(write_config(tmp_path, ""), {"SLURM_CKPT_LAUNCHER_PID_WAIT": "0.25"})
    assert s.launcher.pid_wait == timedelta(milliseconds=250)


def test_catalog_url_from_file(tmp_path: Path) -> None:
    url = "postgresql+psycopg://ckpt@db.example/ckpt"
    s = load_settings(write_config(tmp_path, f'[catalog]\nurl = "{url}"\n'), {})
    assert s.catalog.url == url


def test_env_wins_over_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [paths]
        state_dir = "/from/file"
        [catalog]
        url = "sqlite:////from/file/catalog.db"
        [slurm]
        command_timeout = 5
        [service]
        max_concurrent_checkpoints = 2
        poll_interval = "10s"
        log_level = "ERROR"
        """,
    )
    env = {
        "SLURM_CKPT_PATHS_STATE_DIR": "/from/env",
        "SLURM_CKPT_CATALOG_URL": "postgresql://db/ckpt",
        "SLURM_CKPT_SLURM_COMMAND_TIMEOUT": "2.5",
        "SLURM_CKPT_SERVICE_MAX_CONCURRENT_CHECKPOINTS": "8",
        "SLURM_CKPT_SERVICE_POLL_INTERVAL": "1m",
        "SLURM_CKPT_SERVICE_LOG_LEVEL": "WARNING",
    }
    s = load_settings(path, env)
    assert_settings(
        s,
        {
            "paths.state_dir": Path("/from/env"),
            "catalog.url": "postgresql://db/ckpt",
            "slurm.command_timeout": timedelta(seconds=2.5),
            "service.max_concurrent_checkpoints": 8,
            "service.poll_interval": timedelta(minutes=1),
            "service.log_level": "WARNING",
        },
    )


def test_env_state_dir_moves_the_default_catalog(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {"SLURM_CKPT_PATHS_STATE_DIR": "/x/y"})
    assert s.catalog.url == "sqlite:////x/y/catalog.db"


def test_config_file_named_by_env(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[service]\nmax_concurrent_checkpoints = 9\n")
    s = load_settings(None, {"SLURM_CKPT_CONFIG": str(path)})
    assert s.config_file == path
    assert s.service.max_concurrent_checkpoints == 9


def test_explicit_path_wins_over_env_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[service]\nmax_concurrent_checkpoints = 9\n")
    other = tmp_path / "other.toml"
    other.write_text("[service]\nmax_concurrent_checkpoints = 1\n", encoding="utf-8")
    s = load_settings(path, {"SLURM_CKPT_CONFIG": str(other)})
    assert s.service.max_concurrent_checkpoints == 9


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.service.log_level = "DEBUG"  # type: ignore[misc]


def test_get_settings_loads_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_config(tmp_path, "[service]\nmax_concurrent_checkpoints = 7\n")
    monkeypatch.setenv("SLURM_CKPT_CONFIG", str(path))
    get_settings.cache_clear()
    try:
        first = get_settings()
        path.write_text("[service]\nmax_concurrent_checkpoints = 1\n", encoding="utf-8")
        assert get_settings() is first
        assert isinstance(first, Settings)
        assert first.service.max_concurrent_checkpoints == 7
    finally:
        get_settings.cache_clear()


# Errors


def test_explicit_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    err = load_error(None, {"SLURM_CKPT_CONFIG": str(missing)})
    assert str(missing) in str(err)
    assert "not found" in str(err)
    assert err.source == str(missing)


def test_missing_file_passed_as_argument(tmp_path: Path) -> None:
    err = load_error(tmp_path / "nope.toml")
    assert "not found" in str(err)


def test_empty_config_env_var() -> None:
    err = load_error(None, {"SLURM_CKPT_CONFIG": ""})
    assert "SLURM_CKPT_CONFIG" in str(err)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[service\n")
    err = load_error(path)
    assert f"{path} is not valid TOML" in str(err)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    # A directory where the file should be: an OSError other than "not found".
    err = load_error(tmp_path)
    assert f"cannot read {tmp_path}" in str(err)


def test_unknown_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[service]\nmax_concurent_checkpoints = 3\n")
    err = load_error(path)
    assert str(err).startswith(f"config: unknown key service.max_concurent_checkpoints in {path}")
    assert "max_concurrent_checkpoints" in str(err)  # the known keys are listed
    assert err.key == "service.max_concurent_checkpoints"


def test_unknown_section(tmp_path: Path) -> None:
    err = load_error(write_config(tmp_path, "[servce]\npoll_interval = '5s'\n"))
    assert "unknown section [servce]" in str(err)
    assert "service" in str(err)


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    err = load_error(write_config(tmp_path, 'service = "fast"\n'))
    assert "config: service = " in str(err)
    assert "must be a table" in str(err)


def test_section_not_a_table_even_when_env_sets_every_key(tmp_path: Path) -> None:
    env = {
        "SLURM_CKPT_PATHS_STATE_DIR": "/a",
        "SLURM_CKPT_PATHS_STORE_ROOT": "/b",
    }
    err = load_error(write_config(tmp_path, "paths = 3\n"), env)
    assert "must be a table" in str(err)


def test_count_zero_message(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[service]\nmax_concurrent_checkpoints = 0\n")
    err = load_error(path)
    assert str(err) == (
        f"config: service.max_concurrent_checkpoints = 0 in {path}: must be an integer >= 1"
    )
    assert err.key == "service.max_concurrent_checkpoints"
    assert err.source == str(path)


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('[service]\nmax_concurrent_checkpoints = "4"\n', "max_concurrent_checkpoints", "integer"),
        ("[service]\nmax_concurrent_checkpoints = 2.0\n", "max_concurrent_checkpoints", "integer"),
        ("[service]\nmax_concurrent_checkpoints = true\n", "max_concurrent_checkpoints", "integer"),
        ("[retention]\nkeep_last = -1\n", "keep_last", "integer >= 0"),
        ('[slurm]\ncluster = "a b"\n', "cluster", "letters, digits"),
        ("[slurm]\ncommand_timeout = 0\n", "command_timeout", "seconds > 0"),
        ("[slurm]\ncommand_timeout = -1.5\n", "command_timeout", "seconds > 0"),
        ("[slurm]\ncommand_timeout = nan\n", "command_timeout", "seconds > 0"),
        ('[slurm]\ncommand_timeout = "30"\n', "command_timeout", "seconds > 0"),
        ('[slurm]\nadapter = "rest"\n', "adapter", "one of cli, pyslurm"),
        ('[service]\nlog_level = "verbose"\n', "log_level", "one of DEBUG, INFO"),
        ("[paths]\nstate_dir = 5\n", "state_dir", "must be a path"),
        ('[paths]\nstate_dir = ""\n', "state_dir", "must be a path"),
        ('[paths]\nstate_dir = "var/lib"\n', "state_dir", "absolute path"),
        ('[paths]\nstore_root = "./store"\n', "store_root", "absolute path"),
        ('[criu]\nbinary = "criu"\n', "binary", "absolute path"),
        ('[catalog]\nurl = "/var/lib/catalog.db"\n', "url", "database URL"),
        ("[catalog]\nurl = 1\n", "url", "database URL"),
        ('[checkpoint]\nmin_interval = "abc"\n', "min_interval", "90s, 30m"),
        ('[checkpoint]\nmin_interval = "0"\n', "min_interval", "the total is 0"),
        ('[service]\npoll_interval = "-5s"\n', "poll_interval", "sign"),
        ("[service]\npoll_interval = 5\n", "poll_interval", 'string like "5m"'),
    ],
)
def test_invalid_file_value(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    assert_file_value_refused(tmp_path, toml, key, problem)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("SLURM_CKPT_SERVICE_MAX_CONCURRENT_CHECKPOINTS", "0", "integer >= 1"),
        ("SLURM_CKPT_SERVICE_MAX_CONCURRENT_CHECKPOINTS", "four", "integer >= 1"),
        ("SLURM_CKPT_SERVICE_MAX_CONCURRENT_CHECKPOINTS", " 4", "integer >= 1"),
        ("SLURM_CKPT_SLURM_COMMAND_TIMEOUT", "inf", "seconds > 0"),
        ("SLURM_CKPT_SLURM_COMMAND_TIMEOUT", "0", "seconds > 0"),
        ("SLURM_CKPT_PATHS_STORE_ROOT", "store", "absolute path"),
        ("SLURM_CKPT_CHECKPOINT_MIN_INTERVAL", "10y", "90s, 30m"),
        ("SLURM_CKPT_SERVICE_LOG_LEVEL", "info", "one of DEBUG"),
    ],
)
def test_invalid_env_value(tmp_path: Path, name: str, value: str, problem: str) -> None:
    err = assert_env_value_refused(tmp_path, name, value, problem)
    assert f"= {value!r}".replace("'", '"') in str(err)


def test_env_integer_is_converted(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {"SLURM_CKPT_RETENTION_KEEP_LAST": "10"})
    assert s.retention.keep_last == 10


def test_unrelated_env_vars_are_ignored(tmp_path: Path) -> None:
    s = load_settings(
        write_config(tmp_path, ""), {"SLURM_CKPT_SOMETHING_ELSE": "x", "PATH": "/bin"}
    )
    assert s.service.max_concurrent_checkpoints == 4


def test_message_value_is_shortened_and_one_line(tmp_path: Path) -> None:
    long_value = "x\n" * 200
    err = load_error(write_config(tmp_path, f'[slurm]\nadapter = """{long_value}"""\n'))
    assert len(str(err)) < 300
