"""The registry of dump backends, by name.

A backend whose optional dependency is missing (pycriu) is still listed, with
the reason; the error is raised only when someone selects it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slurm_ckpt.dump.base import Dumper
from slurm_ckpt.errors import DumperUnavailable


@dataclass(frozen=True)
class BackendInfo:
    name: str
    available: bool
    reason: str


@dataclass(frozen=True)
class DumperOptions:
    binary: Path  # the CRIU binary to run
    timeout: float  # seconds one dump or restore may take
    file_locks: bool = True  # dump and restore the tree's file locks
    ghost_limit: int = 1 << 20  # bytes of a deleted open file saved into the image


def _make_criu(options: DumperOptions) -> Dumper:
    from slurm_ckpt.dump.criu import CriuDumper

    return CriuDumper(
        options.binary,
        timeout=options.timeout,
        file_locks=options.file_locks,
        ghost_limit=options.ghost_limit,
    )


def _make_fake(options: DumperOptions) -> Dumper:
    from slurm_ckpt.dump.fake import FakeDumper

    return FakeDumper()


def _criu_missing() -> str:
    if importlib.util.find_spec("pycriu") is None:
        return "pycriu is not importable (it is built with CRIU; see scripts/setup-system.sh)"
    return ""


_BACKENDS: dict[str, tuple[Callable[[DumperOptions], Dumper], Callable[[], str]]] = {
    "criu": (_make_criu, _criu_missing),
    "fake": (_make_fake, lambda: ""),
}


def backends() -> list[BackendInfo]:
    """Every registered backend, usable or not, with the reason when not."""
    out = []
    for name, (_, missing) in _BACKENDS.items():
        reason = missing()
        out.append(BackendInfo(name, not reason, reason))
    return out


def get_dumper(
    name: str,
    *,
    binary: Path,
    timeout: float = 600,
    file_locks: bool = True,
    ghost_limit: int = 1 << 20,
) -> Dumper:
    """Build the named backend. Raises DumperUnavailable for an unknown or unusable one."""
    if name not in _BACKENDS:
        raise DumperUnavailable(name, f"unknown backend; known: {', '.join(_BACKENDS)}")
    make, missing = _BACKENDS[name]
    reason = missing()
    if reason:
        raise DumperUnavailable(name, reason)
    return make(DumperOptions(binary, timeout, file_locks, ghost_limit))
