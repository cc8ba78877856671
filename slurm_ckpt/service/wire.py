"""The API's JSON form of catalog records and operation results, both ways.

`dump` turns frozen dataclasses (and lists of them) into JSON values: times as
ISO 8601 with their offset, enums by value. `load` rebuilds them from their
type hints and checks every field on the way, so a malformed reply is one
WireError, never a record with a wrong type inside. A field one end does not
know yet (the client and the service are one release apart) is defaulted or
left out, never an error.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar, cast

from slurm_ckpt.errors import CkptError

T = TypeVar("T")


class WireError(CkptError, ValueError):
    """A value does not have the shape its type says."""


def dump(value: object) -> Any:
    """`value` as JSON-able data."""
    kind = type(value)
    if value is None or kind in _SCALARS:
        return value
    if isinstance(value, Enum):  # before str: a StrEnum is a str
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | frozenset):
        return [dump(item) for item in value]
    if isinstance(value, dict):
        return {str(key): dump(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value):
        return {name: dump(getattr(value, name)) for name in _names(cast(Any, kind))}
    if isinstance(value, str | int | float):
        return value
    raise WireError(f"cannot send a {kind.__name__}")


def load(hint: type[T], data: object, where: str = "reply") -> T:
    """`data` rebuilt as `hint` (a dataclass, list[...], X | None, an enum, a scalar)."""
    try:
        return cast(T, _loader(cast(Any, hint))(data))
    except WireError as err:
        raise WireError(f"{where}: {err}") from None


_SCALARS = frozenset({str, int, float, bool})
_Loader = Callable[[object], Any]


@functools.cache
def _loader(hint: Any) -> _Loader:
    """A function that rebuilds data as `hint`, made once per type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [o for o in typing.get_args(hint) if o is not type(None)]
        load_inner = _loader(inner)
        return lambda data: None if data is None else load_inner(data)
    if origin is list:
        load_item = _loader(typing.get_args(hint)[0])
        return lambda data: [load_item(x) for x in _expect(list, data)]
    if origin is dict:
        key_type, item_type = typing.get_args(hint)
        load_key, load_value = _loader(key_type), _loader(item_type)
        return lambda data: {load_key(k): load_value(v) for k, v in _expect(dict, data).items()}
    if hint is Any:
        return lambda data: data
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record_loader(hint)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum_loader(hint)
    if hint is datetime:
        return _time
    if hint is float:
        return _number
    if hint in (str, int, bool):
        return lambda data: _scalar(hint, data)
    raise WireError(f"cannot read a {hint!r}")


def _record_loader(cls: type) -> _Loader:
    hints = typing.get_type_hints(cls)
    fields = [(name, _loader(hints[name])) for name in _names(cls)]
    # A client and a service one release apart must still talk: a field the other
    # side does not send yet takes its default, one this side does not know is
    # left out. A field without a default is required.
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }

    def load_record(data: object) -> Any:
        given = _expect(dict, data)
        if not required <= given.keys():
            missing = ", ".join(sorted(required - given.keys()))
            raise WireError(f"fields of {cls.__name__} missing: {missing}")
        values = {}
        for name, load_field in fields:
            if name not in given:
                continue
            try:
                values[name] = load_field(given[name])
            except WireError as err:
                raise WireError(f"{name}: {err}") from None
        return cls(**values)

    return load_record


def _enum_loader(cls: type[Enum]) -> _Loader:
    def load_enum(data: object) -> Any:
        try:
            return cls(data)
        except ValueError:
            raise WireError(f"{data!r} is not a {cls.__name__}") from None

    return load_enum


def _time(data: object) -> datetime:
    try:
        when = datetime.fromisoformat(_expect(str, data))
    except ValueError:
        raise WireError(f"{data!r} is not a time") from None
    if when.tzinfo is None:
        raise WireError(f"{data!r} has no offset")
    return when


def _number(data: object) -> float:
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise WireError(f"expected a number, got {type(data).__name__}")
    return float(data)


def _scalar(kind: type, data: object) -> Any:
    if type(data) is not kind:
        raise WireError(f"expected {kind.__name__}, got {type(data).__name__}")
    return data


def _expect(kind: type[T], data: object) -> T:
    if not isinstance(data, kind):
        raise WireError(f"expected {kind.__name__}, got {type(data).__name__}")
    return data


@functools.cache
def _names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
