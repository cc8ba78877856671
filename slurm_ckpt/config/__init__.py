"""Settings: every default, loaded and validated once.

Sources, later ones winning: the defaults declared in `settings.py`, the TOML
file (`$SLURM_CKPT_CONFIG`, else /etc/slurm-ckpt/config.toml), and environment
variables named SLURM_CKPT_<SECTION>_<KEY> (e.g. SLURM_CKPT_CATALOG_URL).

The keys, their types, bounds and defaults: `settings.py` (to add a setting,
one field there). How a value is read: `reader.py`; the value parsers:
`parsers.py`.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from slurm_ckpt.config.reader import ENV_PREFIX, Source, read
from slurm_ckpt.config.settings import (
    AdminSettings,
    ApiSettings,
    CatalogSettings,
    CheckpointSettings,
    CriuSettings,
    LauncherSettings,
    PathSettings,
    RequeueSettings,
    RetentionSettings,
    ServiceSettings,
    Settings,
    SlurmSettings,
    WalltimeSettings,
)
from slurm_ckpt.errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "AdminSettings",
    "ApiSettings",
    "CatalogSettings",
    "CheckpointSettings",
    "CriuSettings",
    "LauncherSettings",
    "PathSettings",
    "RequeueSettings",
    "RetentionSettings",
    "ServiceSettings",
    "Settings",
    "SlurmSettings",
    "WalltimeSettings",
    "get_settings",
    "load_settings",
]

DEFAULT_CONFIG_PATH = Path("/etc/slurm-ckpt/config.toml")
CONFIG_ENV_VAR = "SLURM_CKPT_CONFIG"


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load, validate and return the settings.

    `path` defaults to $SLURM_CKPT_CONFIG, then DEFAULT_CONFIG_PATH (which may
    be absent); `env` defaults to os.environ. With both given, nothing global
    is read. Raises ConfigError naming the key and where its value came from.
    """
    if env is None:
        env = os.environ
    file_path, required = _choose_file(path, env)
    data = _read_file(file_path, required)
    settings = read(
        Settings,
        Source(data or {}, str(file_path), env),
        config_file=file_path if data is not None else None,
    )
    _check_together(settings)
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use (`get_settings.cache_clear()` reloads)."""
    return load_settings()


def _check_together(s: Settings) -> None:
    # Keys that are valid alone but not in combination.
    if s.service.failure_backoff_max < s.service.failure_backoff:
        longest = int(s.service.failure_backoff_max.total_seconds())
        first = int(s.service.failure_backoff.total_seconds())
        raise ConfigError(
            f"config: service.failure_backoff_max ({longest}s) is shorter than "
            f"service.failure_backoff ({first}s): raise the maximum or lower the backoff",
            key="service.failure_backoff_max",
        )


def _choose_file(path: Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Return the config file to read and whether it must exist."""
    if path is not None:
        return path, True
    named = env.get(CONFIG_ENV_VAR)
    if named is None:
        return DEFAULT_CONFIG_PATH, False
    if not named:
        raise ConfigError(
            f"config: ${CONFIG_ENV_VAR} is set but empty: name a file or unset it",
            key=CONFIG_ENV_VAR,
            source="environment",
        )
    return Path(named), True


def _read_file(path: Path, required: bool) -> dict[str, object] | None:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        if not required:
            return None
        raise ConfigError(
            f"config: file {path} not found: create it or point ${CONFIG_ENV_VAR} elsewhere",
            source=str(path),
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config: {path} is not valid TOML: {err}", source=str(path)) from err
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(f"config: cannot read {path}: {reason}", source=str(path)) from err
