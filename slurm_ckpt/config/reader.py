"""The one reader of the settings declared in settings.py.

A setting is a field of a section's dataclass made with `setting(parser,
default)`. For each, in the order declared: $SLURM_CKPT_<SECTION>_<KEY> when
set, else the file's value, else the default; the parser turns the value into
the domain value, or the error names the key, the value and where it came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_type_hints

from slurm_ckpt.config.parsers import Invalid, Parser, show
from slurm_ckpt.errors import ConfigError

ENV_PREFIX = "SLURM_CKPT_"

T = TypeVar("T")
S = TypeVar("S")

_METADATA = "slurm_ckpt.setting"


@dataclass(frozen=True)
class Key(Generic[T]):
    """How a setting is read; its default is the field's."""

    parse: Parser[T]
    # Unset, the value is derived from another key's ("section.key") value instead.
    follows: tuple[str, Callable[[Any], T]] | None = None


def setting(
    parse: Parser[T], default: T, *, follows: tuple[str, Callable[[Any], T]] | None = None
) -> T:
    """Declare a dataclass field as a setting: its parser (with its bounds) and default."""
    return dataclasses.field(default=default, metadata={_METADATA: Key(parse, follows)})


def key_of(field: dataclasses.Field[Any]) -> Key[Any]:
    """The declaration of a section's field. Raises KeyError for a field not made by `setting`."""
    key: Key[Any] = field.metadata[_METADATA]
    return key


def sections(settings: type) -> dict[str, type]:
    """The sections of a settings dataclass: its fields whose type is a dataclass, by name."""
    hints = get_type_hints(settings)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(settings)
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])
    }


@dataclass(frozen=True)
class Source:
    tables: Mapping[str, object]  # the file's top level; {} without a file
    file: str  # the file's path, for messages
    env: Mapping[str, str]


def read(settings: type[S], source: Source, **others: object) -> S:
    """Build `settings` (a dataclass of sections) from `source`; `others` are its
    fields that are not sections. Raises ConfigError for a bad value, a section
    that is not a table, or a section or key of the file nobody reads."""
    declared = sections(settings)
    read_so_far: dict[str, object] = {}  # "section.key" -> value, for `follows`
    built: dict[str, object] = {}
    for section, cls in declared.items():
        table = _table(source, section)
        values = {}
        for field in dataclasses.fields(cls):
            value = _value(source, table, section, field, read_so_far)
            read_so_far[f"{section}.{field.name}"] = values[field.name] = value
        built[section] = cls(**values)
    _reject_unknown(
        source, {s: [f.name for f in dataclasses.fields(c)] for s, c in declared.items()}
    )
    return settings(**built, **others)


def _value(
    source: Source,
    table: Mapping[str, object],
    section: str,
    field: dataclasses.Field[Any],
    read_so_far: Mapping[str, object],
) -> object:
    name, key = field.name, key_of(field)
    env_name = f"{ENV_PREFIX}{section}_{name}".upper()
    if env_name in source.env:
        raw: object = source.env[env_name]
        where, from_env = f"${env_name}", True
    elif name in table:
        raw, where, from_env = table[name], source.file, False
    elif key.follows is not None:
        other, derive = key.follows
        return derive(read_so_far[other])
    else:
        return field.default
    try:
        return key.parse(raw, from_env)
    except Invalid as err:
        raise ConfigError(
            f"config: {section}.{name} = {show(raw)} in {where}: {err}",
            key=f"{section}.{name}",
            source=where,
        ) from err


def _table(source: Source, section: str) -> Mapping[str, object]:
    table = source.tables.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"config: {section} = {show(table)} in {source.file}: must be a table ([{section}])",
            key=section,
            source=source.file,
        )
    return table


def _reject_unknown(source: Source, known: Mapping[str, list[str]]) -> None:
    """Raise ConfigError for the first section or key of the file nobody reads."""
    for section in source.tables:
        if section not in known:
            raise ConfigError(
                f"config: unknown section [{section}] in {source.file}: "
                f"known sections are {', '.join(known)}",
                key=section,
                source=source.file,
            )
        for name in _table(source, section):
            if name not in known[section]:
                raise ConfigError(
                    f"config: unknown key {section}.{name} in {source.file}: "
                    f"known keys in [{section}] are {', '.join(known[section])}",
                    key=f"{section}.{name}",
                    source=source.file,
                )
