"""Every setting, declared once, with every default.

A section is a frozen dataclass; a key is one of its fields,
`name: type = setting(parser, default)`: section, name, type, parser (with its
bounds) and default on one line. `reader.read` reads them all the same way.
Durations are `timedelta`s; `[retention]` gives the catalog's `RetentionPolicy`.

To add a setting: one field in its section.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from slurm_ckpt.config.parsers import (
    DATABASE_URL,
    HOST,
    WEB_URL,
    WORD,
    Integer,
    Names,
    OneOf,
    absolute_path,
    boolean,
    fraction,
    interval,
    one_of,
    seconds,
)
from slurm_ckpt.config.reader import setting
from slurm_ckpt.db.retention import RetentionPolicy
from slurm_ckpt.dump import registry as dumpers
from slurm_ckpt.slurm import registry as adapters
from slurm_ckpt.slurm import states

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
NO_IMAGE_POLICIES = ("fresh", "fail")  # what a restart with no usable image does
COUNT = Integer(minimum=1)
COUNT_OR_ZERO = Integer(minimum=0)
PORT = Integer(minimum=0, maximum=65535)  # 0: off


def sqlite_catalog(state_dir: Path) -> str:
    """The SQLite catalog in `state_dir`; absolute, so SQLAlchemy's four-slash form."""
    return f"sqlite:///{state_dir}/catalog.db"


@dataclass(frozen=True)
class PathSettings:
    state_dir: Path = setting(absolute_path, Path("/var/lib/slurm-ckpt"))
    # On a real cluster: a filesystem every node and the service host see.
    store_root: Path = setting(absolute_path, Path("/var/lib/slurm-ckpt/store"))


@dataclass(frozen=True)
class CriuSettings:
    # The copy carrying cap_checkpoint_restore, run as the job's user.
    binary: Path = setting(absolute_path, Path("/opt/slurm-ckpt/bin/criu-unpriv"))
    root_binary: Path = setting(absolute_path, Path("/opt/slurm-ckpt/sbin/criu"))
    # The only group that may execute `binary` (root:<group> 0750): whoever runs it can
    # choose PIDs, and so squat those recorded in another user's image.
    group: str = setting(WORD, "slurm-ckpt-criu")
    # Dump the file locks (POSIX, flock, OFD) the tree holds and take them again at
    # restore; off, CRIU refuses every tree holding one (HDF5, NetCDF, SQLite do).
    file_locks: bool = setting(boolean, True)


@dataclass(frozen=True)
class CatalogSettings:
    # Unset, it follows paths.state_dir.
    url: str = setting(
        DATABASE_URL,
        sqlite_catalog(PathSettings.state_dir),
        follows=("paths.state_dir", sqlite_catalog),
    )


@dataclass(frozen=True)
class SlurmSettings:
    adapter: str = setting(OneOf(adapters.BACKENDS.names), "cli")
    command_timeout: timedelta = setting(seconds, timedelta(seconds=30))
    # A controller that does not answer is asked again this many times in all
    # (transient errors only), retry_delay apart, then reported.
    max_attempts: int = setting(COUNT, 3)
    retry_delay: timedelta = setting(seconds, timedelta(seconds=2))
    cluster: str = setting(WORD, "cluster")  # the name jobs are recorded under in the catalog


@dataclass(frozen=True)
class CheckpointSettings:
    min_interval: timedelta = setting(interval, timedelta(minutes=5))


@dataclass(frozen=True)
class ServiceSettings:
    poll_interval: timedelta = setting(interval, timedelta(seconds=5))
    max_concurrent_checkpoints: int = setting(COUNT, 4)
    log_level: str = setting(one_of(*LOG_LEVELS), "INFO")
    max_checkpoints_per_store: int = setting(COUNT, 2)  # dumps in flight into one image store
    # A request without a result by then is FAILED. Longer than launcher.dump_timeout
    # (10m) plus hashing and committing the largest image benchmarked (1 GiB, seconds):
    # a dump that may still succeed is not declared lost (a late one is still
    # accepted, see service/late.py).
    checkpoint_deadline: timedelta = setting(interval, timedelta(minutes=15))
    # How long one file operation in a job's folder may take.
    store_timeout: timedelta = setting(seconds, timedelta(seconds=30))
    # After the first failure in a row; doubles per failure, never past the maximum.
    failure_backoff: timedelta = setting(interval, timedelta(minutes=5))
    failure_backoff_max: timedelta = setting(interval, timedelta(hours=2))
    give_up_after: int = setting(COUNT, 5)  # failures in a row before "uncheckpointable"
    jitter_fraction: float = setting(fraction, 0.1)  # due times spread by this share of it
    metrics_port: int = setting(PORT, 0)  # 0: no metrics endpoint
    metrics_host: str = setting(HOST, "127.0.0.1")


@dataclass(frozen=True)
class RequeueSettings:
    enabled: bool = setting(boolean, True)
    # Long Slurm job states; never a cancel or a normal end.
    causes: frozenset[str] = setting(Names(states.REQUEUE_CAUSES), states.DEFAULT_REQUEUE_CAUSES)
    max_restarts: int = setting(COUNT_OR_ZERO, 3)


@dataclass(frozen=True)
class RetentionSettings:
    # A valid image is kept when any rule keeps it; the newest valid one always is.
    keep_last: int = setting(COUNT_OR_ZERO, 3)  # the N newest valid images (0: no count rule)
    # Images completed this recently (unset: no age rule).
    keep_within: timedelta | None = setting(interval, None)
    minimum: int = setting(COUNT, 1)  # never fewer valid images than this

    @property
    def policy(self) -> RetentionPolicy:
        """These rules as the catalog applies them."""
        return RetentionPolicy(
            keep_last=self.keep_last or None, keep_within=self.keep_within, minimum=self.minimum
        )


@dataclass(frozen=True)
class WalltimeSettings:
    # Checkpoint before the time limit and requeue, past any partition limit.
    chaining: bool = setting(boolean, False)
    max_chained_runs: int = setting(COUNT_OR_ZERO, 5)
    margin: timedelta = setting(interval, timedelta(minutes=2))  # final checkpoint this early


@dataclass(frozen=True)
class LauncherSettings:
    dumper: str = setting(OneOf(dumpers.BACKENDS.names), "criu")
    no_image: str = setting(one_of(*NO_IMAGE_POLICIES), "fresh")
    # Files open for writing up to this size are copied into each image.
    copy_max_bytes: int = setting(COUNT_OR_ZERO, 1 << 30)
    # How long to wait for an image's pids to be free before giving up.
    pid_wait: timedelta = setting(seconds, timedelta(seconds=10))
    dump_timeout: timedelta = setting(seconds, timedelta(minutes=10))  # one dump or restore
    # How long a job waits at its start for <store>/<user>/, which the service makes
    # when it first tracks one of the user's jobs (about one poll).
    store_wait: timedelta = setting(seconds, timedelta(seconds=30))


@dataclass(frozen=True)
class AdminSettings:
    # Members (and root) may run ckpt-admin's mutating commands and see every job.
    group: str = setting(WORD, "slurm-ckpt-admin")


@dataclass(frozen=True)
class ApiSettings:
    host: str = setting(HOST, "127.0.0.1")  # where slurm-ckptd listens for users' ckpt-admin
    port: int = setting(PORT, 0)  # 0: no API; only root's ckpt-admin (on the catalog) works
    url: str = setting(WEB_URL, "")  # where ckpt-admin sends its requests; "": host and port

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
    """Every section, in the order they are read (and listed in messages)."""

    paths: PathSettings
    criu: CriuSettings
    catalog: CatalogSettings
    slurm: SlurmSettings
    checkpoint: CheckpointSettings
    service: ServiceSettings
    requeue: RequeueSettings
    retention: RetentionSettings
    walltime: WalltimeSettings
    launcher: LauncherSettings
    admin: AdminSettings
    api: ApiSettings
    config_file: Path | None  # the file that was read; None when only defaults and env apply
