"""The dump backends by name, in one explicit registry (see slurm_ckpt.registry).

A backend whose optional dependency is missing (pycriu) is still listed, with
the reason; the error is raised only when someone selects it.

Only CRIU is registered. The fake backend (dump/fake.py) is for tests and
benchmarks, which call `register_fake` first; a production configuration
naming it is refused, as `launcher.dumper` takes its names from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from slurm_ckpt.dump.base import Dumper
from slurm_ckpt.errors import DumperUnavailable
from slurm_ckpt.registry import Entry, Registry


@dataclass(frozen=True)
class DumperOptions:
    binary: Path  # the CRIU binary to run
    timeout: timedelta  # how long one dump or restore may take
    file_locks: bool = True  # dump and restore the tree's file locks
    ghost_limit: int = 1 << 20  # bytes of a deleted open file saved into the image


def _criu_arguments(options: DumperOptions) -> Mapping[str, object]:
    return {
        "binary": options.binary,
        "timeout": options.timeout.total_seconds(),
        "file_locks": options.file_locks,
        "ghost_limit": options.ghost_limit,
    }


BACKENDS: Registry[DumperOptions, Dumper] = Registry(
    "backend",
    DumperUnavailable,
    [
        Entry(
            "criu",
            "CRIU over `criu swrk`, unprivileged",
            "slurm_ckpt.dump.criu",
            "CriuDumper",
            requires=("pycriu",),
            hint="it is built with CRIU; see scripts/setup-system.sh",
            arguments=_criu_arguments,
        )
    ],
)

FAKE: Entry[DumperOptions] = Entry(
    "fake", "saves nothing of the process: for tests", "slurm_ckpt.dump.fake", "FakeDumper"
)


def register_fake(registry: Registry[DumperOptions, Dumper] = BACKENDS) -> None:
    """Make the fake backend selectable as "fake" (tests and benchmarks only; the
    package itself never calls this). Registering it twice does nothing."""
    if FAKE.name not in registry:
        registry.add(FAKE)


def create(name: str, options: DumperOptions) -> Dumper:
    """A new backend of the named kind.

    Raises DumperUnavailable for an unknown name or one that cannot be used here
    (with the reason).
    """
    return BACKENDS.create(name, options)
