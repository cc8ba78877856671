"""The Slurm adapters by name, in one explicit registry (see slurm_ckpt.registry).

An adapter whose optional import fails (pyslurm) is still listed, with the
reason; the error comes only when someone selects it. The fake Slurm of the
tests (slurm/fake.py) is not registered: tests build it themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from slurm_ckpt.errors import SlurmBackendUnavailable
from slurm_ckpt.registry import Entry, Registry
from slurm_ckpt.slurm.base import SlurmAdapter


class SlurmSettings(Protocol):
    """What the adapters are built from: `[slurm]` of the configuration (config
    takes its adapter names from here, so this module does not import config)."""

    @property
    def command_timeout(self) -> timedelta: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def retry_delay(self) -> timedelta: ...


def _cli_arguments(settings: SlurmSettings) -> Mapping[str, object]:
    return {
        "command_timeout": settings.command_timeout.total_seconds(),
        "max_attempts": settings.max_attempts,
        "retry_delay": settings.retry_delay.total_seconds(),
    }


BACKENDS: Registry[SlurmSettings, SlurmAdapter] = Registry(
    "adapter",
    SlurmBackendUnavailable,
    [
        Entry(
            "cli",
            "Slurm's command-line tools (squeue, scontrol, scancel)",
            "slurm_ckpt.slurm.cli",
            "CliSlurm",
            arguments=_cli_arguments,
        ),
        Entry(
            "pyslurm",
            "pyslurm, in process (needs a matching Slurm)",
            "slurm_ckpt.slurm.pyslurm",
            "PySlurm",
            requires=("pyslurm",),
        ),
    ],
)


def unavailable_reason(name: str) -> str | None:
    """Why adapter `name` cannot be used here, or None when it can.

    Raises KeyError for a name that is not registered.
    """
    return BACKENDS.unavailable_reason(name)


def available() -> list[str]:
    """Names of the adapters usable on this machine."""
    return BACKENDS.available()


def unavailable() -> dict[str, str]:
    """Adapters registered but not usable here, with the reason."""
    return BACKENDS.unavailable()


def create(name: str, settings: SlurmSettings) -> SlurmAdapter:
    """A new adapter of the named kind.

    Raises SlurmBackendUnavailable for an unknown name or one that cannot be
    used here (with the reason).
    """
    return BACKENDS.create(name, settings)
