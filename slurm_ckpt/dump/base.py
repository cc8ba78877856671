"""The dump backend interface.

A backend saves a process tree into a folder while it keeps running, and
restores such a folder as a child of the caller. The launcher depends on this
Protocol only; `registry.get_dumper` picks the implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do on this machine."""

    available: bool
    version: str
    # Memory dirty tracking: pre-dumps plus parent images make a checkpoint
    # write only the pages changed since the last one.
    incremental: bool
    reason: str = ""  # why the backend or a feature is unavailable


@dataclass(frozen=True)
class DumpStats:
    seconds: float  # the whole dump, request to response
    frozen_seconds: float  # how long the tree was stopped


@dataclass(frozen=True)
class RestoreResult:
    pid: int  # the restored root, now a child of the caller
    seconds: float


@dataclass(frozen=True)
class ImageInfo:
    """What a saved tree needs and claims, read from its images before a restore."""

    pids: tuple[int, ...]  # must all be free for the restore
    uids: frozenset[int]  # every real, effective, saved and filesystem uid of every task
    gids: frozenset[int]


# Called while the tree is still frozen after the dump, with the pids of the
# tree: the moment to record what cannot be recorded once it runs again.
FrozenHook = Callable[[list[int]], None]


class Dumper(Protocol):
    name: str

    def capabilities(self) -> Capabilities:
        """Probe this machine. Never raises: an unusable backend says why."""
        ...

    def dump(
        self, pid: int, images: Path, *, log_file: Path, on_frozen: FrozenHook | None = None
    ) -> DumpStats:
        """Save the tree rooted at `pid` into the empty folder `images`; the tree keeps running.

        Raises DumpFailed (with the backend's own reason) when the tree cannot be saved.
        """
        ...

    def inspect(self, images: Path) -> ImageInfo:
        """Read the pids and credentials stored in `images`.

        Raises RestoreFailed when the images cannot be read.
        """
        ...

    def restore(self, images: Path, *, log_file: Path) -> RestoreResult:
        """Restore the tree saved in `images` as a child of the caller.

        Raises RestoreFailed with the backend's reason; nothing of the tree is left running.
        """
        ...
