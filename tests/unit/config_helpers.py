"""Helpers for the tests of the settings: a config file, a refused one, expected values."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_ckpt.config import Settings, load_settings
from slurm_ckpt.errors import ConfigError


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | None, env: dict[str, str] | None = None) -> ConfigError:
    """The error loading `path` with `env` raises; its message is one line."""
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {})
    assert len(str(info.value).splitlines()) == 1
    return info.value


def assert_file_value_refused(tmp_path: Path, toml: str, key: str, problem: str) -> ConfigError:
    """The one-section `toml` is refused for `key`, naming the file and the problem."""
    path = write_config(tmp_path, toml)
    err = load_error(path)
    section = toml.split("]")[0].lstrip("[")
    assert str(err).startswith(f"config: {section}.{key} = ")
    assert f" in {path}: " in str(err)
    assert problem in str(err)
    assert err.key == f"{section}.{key}"
    return err


def assert_env_value_refused(tmp_path: Path, name: str, value: str, problem: str) -> ConfigError:
    """$`name`=`value` is refused over an empty file, naming the variable and the problem."""
    err = load_error(write_config(tmp_path, ""), {name: value})
    assert f"in ${name}: " in str(err)
    assert problem in str(err)
    assert err.source == f"${name}"
    return err


def assert_settings(s: Settings, expected: dict[str, object]) -> None:
    """Each "section.key" of `expected` has that value in `s`, and of that type: == alone
    takes 1 for True and 2 for 2.0."""
    actual = {key: _value(s, key) for key in expected}
    assert actual == expected
    assert {k: type(v) for k, v in actual.items()} == {k: type(v) for k, v in expected.items()}


def _value(s: Settings, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(s, section), name)
