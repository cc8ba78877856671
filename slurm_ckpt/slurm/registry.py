"""The Slurm adapters by name, in one explicit registry.

An adapter whose optional import fails (pyslurm) is still listed, with the
reason; the error comes only when someone selects it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from slurm_ckpt.config import SlurmSettings
from slurm_ckpt.errors import SlurmBackendUnavailable
from slurm_ckpt.slurm.base import SlurmAdapter


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    load: Callable[[SlurmSettings], SlurmAdapter]


def _cli(settings: SlurmSettings) -> SlurmAdapter:
    from slurm_ckpt.slurm.cli import CliSlurm

    return CliSlurm(
        command_timeout=settings.command_timeout,
        max_attempts=settings.max_attempts,
        retry_delay=settings.retry_delay,
    )


def _pyslurm(settings: SlurmSettings) -> SlurmAdapter:
    module = importlib.import_module("slurm_ckpt.slurm.pyslurm")
    adapter: SlurmAdapter = module.PySlurm()
    return adapter


BACKENDS: dict[str, Backend] = {
    "cli": Backend("cli", "Slurm's command-line tools (squeue, scontrol, scancel)", _cli),
    "pyslurm": Backend("pyslurm", "pyslurm, in process (needs a matching Slurm)", _pyslurm),
}


def unavailable_reason(name: str) -> str | None:
    """Why adapter `name` cannot be used here, or None when it can.

    Raises KeyError for a name that is not registered.
    """
    BACKENDS[name]
    if name == "pyslurm":
        try:
            importlib.import_module("pyslurm")
        except Exception as err:  # a broken build raises more than ImportError
            return f"pyslurm does not import: {type(err).__name__}: {err}"
    return None


def available() -> list[str]:
    """Names of the adapters usable on this machine."""
    return [name for name in BACKENDS if unavailable_reason(name) is None]


def unavailable() -> dict[str, str]:
    """Adapters registered but not usable here, with the reason."""
    reasons = {name: unavailable_reason(name) for name in BACKENDS}
    return {name: reason for name, reason in reasons.items() if reason is not None}


def create(name: str, settings: SlurmSettings) -> SlurmAdapter:
    """A new adapter of the named kind.

    Raises SlurmBackendUnavailable for an unknown name or one that cannot be
    used here (with the reason).
    """
    backend = BACKENDS.get(name)
    if backend is None:
        raise SlurmBackendUnavailable(name, f"unknown adapter; known: {', '.join(BACKENDS)}")
    reason = unavailable_reason(name)
    if reason is not None:
        raise SlurmBackendUnavailable(name, reason)
    return backend.load(settings)
