"""Backends by name: one registry per Protocol (Slurm adapters, dump backends).

An entry names the module that holds the backend and the factory in it, both
imported only when someone selects the entry, and the optional modules it
needs (pyslurm, pycriu). An entry whose optional import fails stays listed,
with the reason; that reason is the error raised when someone selects it.
Importing a registry never imports a backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

Opts = TypeVar("Opts")  # the options a caller hands to `create`
T = TypeVar("T")  # what the factories make: the Protocol's implementations


def no_arguments(options: object) -> Mapping[str, object]:
    """For a factory called without arguments."""
    return {}


@dataclass(frozen=True)
class Entry(Generic[Opts]):
    name: str
    description: str
    module: str  # imported when selected, e.g. "slurm_ckpt.slurm.cli"
    factory: str  # the callable in `module` that makes the backend
    requires: tuple[str, ...] = ()  # optional modules that must import
    hint: str = ""  # how to get `requires`, added to the reason when they fail
    # The factory's keyword arguments, taken from the caller's options.
    arguments: Callable[[Opts], Mapping[str, object]] = no_arguments


class Registry(Generic[Opts, T]):
    """Named entries, in the order they were added.

    `unavailable` builds the error `create` raises: (name, reason) -> exception.
    """

    def __init__(
        self,
        kind: str,
        unavailable: Callable[[str, str], Exception],
        entries: Iterable[Entry[Opts]] = (),
    ) -> None:
        self.kind = kind  # "adapter", "backend": for messages
        self._error = unavailable
        self._entries: dict[str, Entry[Opts]] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: Entry[Opts]) -> None:
        """Register `entry`. Raises ValueError when its name is taken."""
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        """Unregister `name`. Raises KeyError when it is not registered."""
        del self._entries[name]

    def names(self) -> tuple[str, ...]:
        """Every registered name, usable here or not."""
        return tuple(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry[Opts]:
        """The entry named `name`. Raises KeyError when it is not registered."""
        return self._entries[name]

    def unavailable_reason(self, name: str) -> str | None:
        """Why `name` cannot be used here, or None when it can.

        Raises KeyError for a name that is not registered.
        """
        entry = self._entries[name]
        for module in entry.requires:
            try:
                importlib.import_module(module)
            except Exception as err:  # a broken build raises more than ImportError
                hint = f" ({entry.hint})" if entry.hint else ""
                return f"{module} does not import: {type(err).__name__}: {err}{hint}"
        return None

    def available(self) -> list[str]:
        """Names usable on this machine."""
        return [name for name in self._entries if self.unavailable_reason(name) is None]

    def unavailable(self) -> dict[str, str]:
        """Names registered but not usable here, with the reason."""
        reasons = {name: self.unavailable_reason(name) for name in self._entries}
        return {name: reason for name, reason in reasons.items() if reason is not None}

    def create(self, name: str, options: Opts) -> T:
        """A new backend `name`, made from `options`.

        Raises the registry's error for an unknown name or one that cannot be
        used here (with the reason).
        """
        entry = self._entries.get(name)
        if entry is None:
            raise self._error(name, f"unknown {self.kind}; known: {', '.join(self._entries)}")
        reason = self.unavailable_reason(name)
        if reason is not None:
            raise self._error(name, reason)
        try:
            factory = getattr(importlib.import_module(entry.module), entry.factory)
        except Exception as err:
            raise self._error(
                name, f"{entry.module}.{entry.factory} does not import: {type(err).__name__}: {err}"
            ) from err
        made: T = factory(**entry.arguments(options))
        return made
