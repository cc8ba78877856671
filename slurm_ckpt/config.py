"""Settings: every default, loaded and validated once.

Sources, later ones winning: the defaults written in `_build` below, the TOML
file (`$SLURM_CKPT_CONFIG`, else /etc/slurm-ckpt/config.toml), and environment
variables named SLURM_CKPT_<SECTION>_<KEY> (e.g. SLURM_CKPT_CATALOG_URL).

To add a setting: a field in its section's dataclass and one line in `_build`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slurm_ckpt.errors import ConfigError, IntervalError
from slurm_ckpt.intervals import ACCEPTED_FORMS, parse_interval
from slurm_ckpt.slurm import states

DEFAULT_CONFIG_PATH = Path("/etc/slurm-ckpt/config.toml")
CONFIG_ENV_VAR = "SLURM_CKPT_CONFIG"
ENV_PREFIX = "SLURM_CKPT_"

SLURM_ADAPTERS = ("cli", "pyslurm")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DUMPERS = ("criu", "fake")
NO_IMAGE_POLICIES = ("fresh", "fail")
# Job states a requeue may be configured for: a cancel or a normal end never is.
REQUEUE_CAUSES = tuple(sorted(states.FINISHED - {"CANCELLED", "COMPLETED"}))
DEFAULT_REQUEUE_CAUSES = ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL")


@dataclass(frozen=True)
class PathSettings:
    state_dir: Path
    store_root: Path  # on a real cluster: a filesystem every node and the service host see


@dataclass(frozen=True)
class CriuSettings:
    binary: Path  # the copy carrying cap_checkpoint_restore, run as the job's user
    root_binary: Path
    # The only group that may execute `binary` (root:<group> 0750): whoever runs it can
    # choose PIDs, and so squat those recorded in another user's image.
    group: str
    # Dump the file locks (POSIX, flock, OFD) the tree holds and take them again at
    # restore; off, CRIU refuses every tree holding one (HDF5, NetCDF, SQLite do).
    file_locks: bool


@dataclass(frozen=True)
class CatalogSettings:
    url: str


@dataclass(frozen=True)
class SlurmSettings:
    adapter: str  # one of SLURM_ADAPTERS
    command_timeout: float  # seconds
    # A controller that does not answer is asked again this many times in all
    # (transient errors only), retry_delay seconds apart, then reported.
    max_attempts: int
    retry_delay: float  # seconds
    cluster: str  # the name jobs are recorded under in the catalog


@dataclass(frozen=True)
class CheckpointSettings:
    min_interval: int  # seconds


@dataclass(frozen=True)
class ServiceSettings:
    poll_interval: int  # seconds
    max_concurrent_checkpoints: int
    log_level: str  # one of LOG_LEVELS
    max_checkpoints_per_store: int  # dumps in flight into one image store
    checkpoint_deadline: int  # seconds; a request without a result by then is FAILED
    store_timeout: float  # seconds one file operation in a job's folder may take
    failure_backoff: int  # seconds after the first failure in a row; doubles per failure
    failure_backoff_max: int  # seconds; the backoff never grows past this
    give_up_after: int  # consecutive failures before a job is marked uncheckpointable
    jitter_fraction: float  # due times spread by up to this share of the interval
    metrics_port: int  # 0: no metrics endpoint
    metrics_host: str


@dataclass(frozen=True)
class RequeueSettings:
    enabled: bool
    causes: frozenset[str]  # long Slurm job states, among REQUEUE_CAUSES
    max_restarts: int


@dataclass(frozen=True)
class RetentionSettings:
    # A valid image is kept when any rule keeps it; the newest valid one always is.
    keep_last: int  # the N newest valid images (0: no count rule)
    keep_within: int | None  # seconds: images completed this recently (None: no age rule)
    minimum: int  # never fewer valid images than this


@dataclass(frozen=True)
class WalltimeSettings:
    chaining: bool  # checkpoint before the time limit and requeue, past any partition limit
    max_chained_runs: int
    margin: int  # seconds before the time limit the final checkpoint is taken


@dataclass(frozen=True)
class LauncherSettings:
    dumper: str  # one of DUMPERS
    no_image: str  # one of NO_IMAGE_POLICIES: what a restart with no usable image does
    copy_max_bytes: int  # files open for writing up to this size are copied into each image
    pid_wait: float  # seconds to wait for an image's pids to be free before giving up
    dump_timeout: float  # seconds a single dump or restore may take
    # seconds a job waits at its start for <store>/<user>/, which the service makes
    # when it first tracks one of the user's jobs (about one poll)
    store_wait: float


@dataclass(frozen=True)
class AdminSettings:
    group: str  # members (and root) may run ckpt-admin's mutating commands and see every job


@dataclass(frozen=True)
class ApiSettings:
    host: str  # where slurm-ckptd listens for users' ckpt-admin requests
    port: int  # 0: no API; only root's ckpt-admin (on the catalog) works
    url: str  # where ckpt-admin sends its requests; "": http://<host>:<port>

    @property
    def client_url(self) -> str | None:
        """Where ckpt-admin sends its requests; None when nothing says where."""
        if self.url:
            return self.url
        if not self.port:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    paths: PathSettings
    criu: CriuSettings
    catalog: CatalogSettings
    slurm: SlurmSettings
    checkpoint: CheckpointSettings
    service: ServiceSettings
    requeue: RequeueSettings
    walltime: WalltimeSettings
    retention: RetentionSettings
    launcher: LauncherSettings
    admin: AdminSettings
    api: ApiSettings
    config_file: Path | None  # the file that was read; None when only defaults and env apply


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
    reader = _Reader(data, str(file_path), env)
    settings = _build(reader, file_path if data is not None else None)
    reader.reject_unknown()
    _check_together(settings)
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use (`get_settings.cache_clear()` reloads)."""
    return load_settings()


def _build(r: _Reader, config_file: Path | None) -> Settings:
    # Every default lives here.
    state_dir = r.path("paths", "state_dir", Path("/var/lib/slurm-ckpt"))
    return Settings(
        paths=PathSettings(
            state_dir=state_dir,
            store_root=r.path("paths", "store_root", Path("/var/lib/slurm-ckpt/store")),
        ),
        criu=CriuSettings(
            binary=r.path("criu", "binary", Path("/opt/slurm-ckpt/bin/criu-unpriv")),
            root_binary=r.path("criu", "root_binary", Path("/opt/slurm-ckpt/sbin/criu")),
            group=r.word("criu", "group", "slurm-ckpt-criu"),
            file_locks=r.boolean("criu", "file_locks", True),
        ),
        catalog=CatalogSettings(
            # state_dir is absolute, so this is SQLAlchemy's four-slash absolute form.
            url=r.url("catalog", "url", f"sqlite:///{state_dir}/catalog.db"),
        ),
        slurm=SlurmSettings(
            adapter=r.choice("slurm", "adapter", "cli", SLURM_ADAPTERS),
            command_timeout=r.seconds("slurm", "command_timeout", 30.0),
            max_attempts=r.integer("slurm", "max_attempts", 3, minimum=1),
            retry_delay=r.seconds("slurm", "retry_delay", 2.0),
            cluster=r.word("slurm", "cluster", "cluster"),
        ),
        checkpoint=CheckpointSettings(
            min_interval=r.interval("checkpoint", "min_interval", "5m"),
        ),
        service=ServiceSettings(
            poll_interval=r.interval("service", "poll_interval", "5s"),
            max_concurrent_checkpoints=r.integer(
                "service", "max_concurrent_checkpoints", 4, minimum=1
            ),
            log_level=r.choice("service", "log_level", "INFO", LOG_LEVELS),
            max_checkpoints_per_store=r.integer(
                "service", "max_checkpoints_per_store", 2, minimum=1
            ),
            # Longer than launcher.dump_timeout (10m) plus hashing and committing the
            # largest image benchmarked (1 GiB, seconds): a dump that may still
            # succeed is not declared lost (a late one is still accepted, see
            # service/checkpoints.py).
            checkpoint_deadline=r.interval("service", "checkpoint_deadline", "15m"),
            store_timeout=r.seconds("service", "store_timeout", 30.0),
            failure_backoff=r.interval("service", "failure_backoff", "5m"),
            failure_backoff_max=r.interval("service", "failure_backoff_max", "2h"),
            give_up_after=r.integer("service", "give_up_after", 5, minimum=1),
            jitter_fraction=r.fraction("service", "jitter_fraction", 0.1),
            metrics_port=r.integer("service", "metrics_port", 0, minimum=0, maximum=65535),
            metrics_host=r.host("service", "metrics_host", "127.0.0.1"),
        ),
        requeue=RequeueSettings(
            enabled=r.boolean("requeue", "enabled", True),
            causes=r.names("requeue", "causes", DEFAULT_REQUEUE_CAUSES, REQUEUE_CAUSES),
            max_restarts=r.integer("requeue", "max_restarts", 3, minimum=0),
        ),
        retention=RetentionSettings(
            keep_last=r.integer("retention", "keep_last", 3, minimum=0),
            keep_within=r.optional_interval("retention", "keep_within"),
            minimum=r.integer("retention", "minimum", 1, minimum=1),
        ),
        walltime=WalltimeSettings(
            chaining=r.boolean("walltime", "chaining", False),
            max_chained_runs=r.integer("walltime", "max_chained_runs", 5, minimum=0),
            margin=r.interval("walltime", "margin", "2m"),
        ),
        launcher=LauncherSettings(
            dumper=r.choice("launcher", "dumper", "criu", DUMPERS),
            no_image=r.choice("launcher", "no_image", "fresh", NO_IMAGE_POLICIES),
            copy_max_bytes=r.integer("launcher", "copy_max_bytes", 1 << 30, minimum=0),
            pid_wait=r.seconds("launcher", "pid_wait", 10.0),
            dump_timeout=r.seconds("launcher", "dump_timeout", 600.0),
            store_wait=r.seconds("launcher", "store_wait", 30.0),
        ),
        admin=AdminSettings(group=r.word("admin", "group", "slurm-ckpt-admin")),
        api=ApiSettings(
            host=r.host("api", "host", "127.0.0.1"),
            port=r.integer("api", "port", 0, minimum=0, maximum=65535),
            url=r.web_url("api", "url", ""),
        ),
        config_file=config_file,
    )


def _check_together(s: Settings) -> None:
    # Keys that are valid alone but not in combination.
    if s.service.failure_backoff_max < s.service.failure_backoff:
        raise ConfigError(
            f"config: service.failure_backoff_max ({s.service.failure_backoff_max}s) is "
            f"shorter than service.failure_backoff ({s.service.failure_backoff}s): "
            "raise the maximum or lower the backoff",
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


@dataclass(frozen=True)
class _Raw:
    value: object  # a TOML value, or the string from an environment variable
    source: str  # the file path, or $NAME of the environment variable
    from_env: bool


class _Reader:
    """Typed access to one setting at a time; remembers which keys exist."""

    def __init__(
        self, data: dict[str, object] | None, file_source: str, env: Mapping[str, str]
    ) -> None:
        self._data = data or {}
        self._file_source = file_source
        self._env = env
        self._known: dict[str, list[str]] = {}

    def path(self, section: str, key: str, default: Path) -> Path:
        raw = self._get(section, key)
        if raw is None:
            return default
        if not isinstance(raw.value, str) or not raw.value:
            raise self._error(section, key, raw, "must be a path")
        value = Path(raw.value)
        if not value.is_absolute():
            raise self._error(section, key, raw, "must be an absolute path")
        return value

    def url(self, section: str, key: str, default: str) -> str:
        raw = self._get(section, key)
        if raw is None:
            return default
        if not isinstance(raw.value, str) or not re.fullmatch(r"[a-z][a-z0-9+]*://\S*", raw.value):
            raise self._error(
                section,
                key,
                raw,
                "must be a database URL like sqlite:////var/lib/slurm-ckpt/catalog.db "
                "or postgresql+psycopg://host/dbname",
            )
        return raw.value

    def web_url(self, section: str, key: str, default: str) -> str:
        raw = self._get(section, key)
        if raw is None:
            return default
        if not isinstance(raw.value, str) or not re.fullmatch(r"https?://[^\s/?#]+/?", raw.value):
            raise self._error(section, key, raw, "must be a URL like http://127.0.0.1:9811")
        return raw.value

    def choice(self, section: str, key: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self._get(section, key)
        if raw is None:
            return default
        if not isinstance(raw.value, str) or raw.value not in choices:
            raise self._error(section, key, raw, f"must be one of {', '.join(choices)}")
        return raw.value

    def integer(
        self, section: str, key: str, default: int, *, minimum: int, maximum: int | None = None
    ) -> int:
        raw = self._get(section, key)
        if raw is None:
            return default
        value: int | None = None
        if raw.from_env:
            if isinstance(raw.value, str) and re.fullmatch(r"-?[0-9]+", raw.value):
                value = int(raw.value)
        elif isinstance(raw.value, int) and not isinstance(raw.value, bool):
            value = raw.value
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise self._error(section, key, raw, f"must be an integer {bound}")
        return value

    def seconds(self, section: str, key: str, default: float) -> float:
        raw = self._get(section, key)
        if raw is None:
            return default
        value: float | None = None
        if raw.from_env:
            if isinstance(raw.value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw.value):
                value = float(raw.value)
        elif isinstance(raw.value, int | float) and not isinstance(raw.value, bool):
            value = float(raw.value)
        if value is None or not math.isfinite(value) or value <= 0:
            raise self._error(section, key, raw, "must be a number of seconds > 0")
        return value

    def interval(self, section: str, key: str, default: str) -> int:
        raw = self._get(section, key)
        if raw is None:
            return parse_interval(default)
        if not isinstance(raw.value, str):
            # A bare TOML number is ambiguous (seconds? minutes?); insist on a string.
            raise self._error(
                section, key, raw, f'must be a string like "5m": use {ACCEPTED_FORMS}'
            )
        try:
            return parse_interval(raw.value)
        except IntervalError as err:
            detail = f"{err.reason}; " if err.reason else ""
            raise self._error(section, key, raw, f"{detail}use {ACCEPTED_FORMS}") from err

    def fraction(self, section: str, key: str, default: float) -> float:
        raw = self._get(section, key)
        if raw is None:
            return default
        value: float | None = None
        if raw.from_env:
            if isinstance(raw.value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw.value):
                value = float(raw.value)
        elif isinstance(raw.value, int | float) and not isinstance(raw.value, bool):
            value = float(raw.value)
        if value is None or not 0.0 <= value <= 1.0:
            raise self._error(section, key, raw, "must be a number from 0 to 1")
        return value

    def boolean(self, section: str, key: str, default: bool) -> bool:
        raw = self._get(section, key)
        if raw is None:
            return default
        if isinstance(raw.value, bool):
            return raw.value
        if raw.from_env and isinstance(raw.value, str):
            word = raw.value.lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
        raise self._error(section, key, raw, "must be true or false")

    def word(self, section: str, key: str, default: str) -> str:
        raw = self._get(section, key)
        if raw is None:
            return default
        if not isinstance(raw.value, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", raw.value):
            raise self._error(section, key, raw, "must be 1-64 letters, digits, '.', '_' or '-'")
        return raw.value

    def optional_interval(self, section: str, key: str) -> int | None:
        """An interval, or None when the key is not set."""
        if self._get(section, key) is None:
            return None
        return self.interval(section, key, "1s")

    def host(self, section: str, key: str, default: str) -> str:
        raw = self._get(section, key)
        if raw is None:
            return default
        if not isinstance(raw.value, str) or not re.fullmatch(r"[A-Za-z0-9.:_-]+", raw.value):
            raise self._error(section, key, raw, "must be a host name or IP address")
        return raw.value

    def names(
        self, section: str, key: str, default: tuple[str, ...], choices: tuple[str, ...]
    ) -> frozenset[str]:
        """A list of names from `choices`; from the environment, comma-separated."""
        raw = self._get(section, key)
        if raw is None:
            return frozenset(default)
        items: list[object]
        if raw.from_env and isinstance(raw.value, str):
            items = [part.strip() for part in raw.value.split(",") if part.strip()]
        elif isinstance(raw.value, list):
            items = list(raw.value)
        else:
            raise self._error(section, key, raw, f"must be a list of {', '.join(choices)}")
        for item in items:
            if not isinstance(item, str) or item not in choices:
                raise self._error(
                    section, key, raw, f"{_show(item)} is not one of {', '.join(choices)}"
                )
        return frozenset(str(item) for item in items)

    def reject_unknown(self) -> None:
        """Raise ConfigError for the first section or key of the file nobody reads."""
        for section in self._data:
            if section not in self._known:
                raise ConfigError(
                    f"config: unknown section [{section}] in {self._file_source}: "
                    f"known sections are {', '.join(self._known)}",
                    key=section,
                    source=self._file_source,
                )
            for key in self._table(section):
                if key not in self._known[section]:
                    raise ConfigError(
                        f"config: unknown key {section}.{key} in {self._file_source}: "
                        f"known keys in [{section}] are {', '.join(self._known[section])}",
                        key=f"{section}.{key}",
                        source=self._file_source,
                    )

    def _get(self, section: str, key: str) -> _Raw | None:
        self._known.setdefault(section, []).append(key)
        table = self._table(section)
        env_name = f"{ENV_PREFIX}{section}_{key}".upper()
        if env_name in self._env:
            return _Raw(self._env[env_name], f"${env_name}", from_env=True)
        if key not in table:
            return None
        return _Raw(table[key], self._file_source, from_env=False)

    def _table(self, section: str) -> dict[str, object]:
        table = self._data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(
                f"config: {section} = {_show(table)} in {self._file_source}: "
                f"must be a table ([{section}])",
                key=section,
                source=self._file_source,
            )
        return table

    def _error(self, section: str, key: str, raw: _Raw, problem: str) -> ConfigError:
        return ConfigError(
            f"config: {section}.{key} = {_show(raw.value)} in {raw.source}: {problem}",
            key=f"{section}.{key}",
            source=raw.source,
        )


_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})


def _show(value: object) -> str:
    # Values as TOML would write them, so the user can find them in the file.
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."
