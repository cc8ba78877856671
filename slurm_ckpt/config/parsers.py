"""Parsers of one setting's value: a TOML value, or the string of an environment
variable, in; the domain value out, or `Invalid` saying what it must be.

Pure: no I/O. A parser carries its bounds (`Integer(minimum=1)`), so a
declaration reads as what the key accepts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from slurm_ckpt.errors import IntervalError
from slurm_ckpt.intervals import ACCEPTED_FORMS, parse_interval

T_co = TypeVar("T_co", covariant=True)

_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})
# The longest timedelta, in seconds: a longer timeout is refused, not an overflow.
_MAX_SECONDS = timedelta.max.total_seconds()


class Invalid(Exception):
    """A value a parser refuses; the message says what it must be ("must be ...")."""


class Parser(Protocol[T_co]):
    def __call__(self, value: object, from_env: bool) -> T_co:
        """The domain value of `value` (from an environment variable when `from_env`:
        then always a string). Raises Invalid."""
        ...


def show(value: object) -> str:
    """`value` as TOML would write it, so the user finds it in the file; one short line."""
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def absolute_path(value: object, from_env: bool) -> Path:
    if not isinstance(value, str) or not value:
        raise Invalid("must be a path")
    path = Path(value)
    if not path.is_absolute():
        raise Invalid("must be an absolute path")
    return path


@dataclass(frozen=True)
class Text:
    """A string matching `pattern` entirely."""

    pattern: str
    problem: str  # what the message says it must be

    def __call__(self, value: object, from_env: bool) -> str:
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise Invalid(self.problem)
        return value


DATABASE_URL = Text(
    r"[a-z][a-z0-9+]*://\S*",
    "must be a database URL like sqlite:////var/lib/slurm-ckpt/catalog.db "
    "or postgresql+psycopg://host/dbname",
)
WEB_URL = Text(r"https?://[^\s/?#]+/?", "must be a URL like http://127.0.0.1:9811")
WORD = Text(r"[A-Za-z0-9._-]{1,64}", "must be 1-64 letters, digits, '.', '_' or '-'")
HOST = Text(r"[A-Za-z0-9.:_-]+", "must be a host name or IP address")


@dataclass(frozen=True)
class OneOf:
    """One of the names `choices` returns, asked when a value is read: the backend
    registries give theirs, and tests may register more."""

    choices: Callable[[], Iterable[str]]

    def __call__(self, value: object, from_env: bool) -> str:
        names = tuple(self.choices())
        if not isinstance(value, str) or value not in names:
            raise Invalid(f"must be one of {', '.join(names)}")
        return value


def one_of(*names: str) -> OneOf:
    """One of a fixed list of names."""
    return OneOf(lambda: names)


@dataclass(frozen=True)
class Names:
    """A list of names from `choices` (from the environment: comma-separated), as a set."""

    choices: frozenset[str]

    def __call__(self, value: object, from_env: bool) -> frozenset[str]:
        shown = ", ".join(sorted(self.choices))
        items: list[object]
        if from_env and isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            items = list(value)
        else:
            raise Invalid(f"must be a list of {shown}")
        for item in items:
            if not isinstance(item, str) or item not in self.choices:
                raise Invalid(f"{show(item)} is not one of {shown}")
        return frozenset(str(item) for item in items)


@dataclass(frozen=True)
class Integer:
    """An integer from `minimum` to `maximum` (no upper bound when None)."""

    minimum: int
    maximum: int | None = None

    def __call__(self, value: object, from_env: bool) -> int:
        number: int | None = None
        if from_env:
            if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
                number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        too_big = self.maximum is not None and number is not None and number > self.maximum
        if number is None or number < self.minimum or too_big:
            bound = (
                f">= {self.minimum}"
                if self.maximum is None
                else f"from {self.minimum} to {self.maximum}"
            )
            raise Invalid(f"must be an integer {bound}")
        return number


def _number(value: object, from_env: bool) -> float | None:
    """A TOML integer or float, or a plain decimal from the environment; else None."""
    if from_env:
        if isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
            return float(value)
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def seconds(value: object, from_env: bool) -> timedelta:
    """A number of seconds > 0 (a timeout or a delay), fractions allowed."""
    number = _number(value, from_env)
    if number is None or not math.isfinite(number) or number <= 0:
        raise Invalid("must be a number of seconds > 0")
    if number > _MAX_SECONDS:
        raise Invalid(f"must be a number of seconds > 0, at most {_MAX_SECONDS:.0f}")
    duration = timedelta(seconds=number)
    if not duration:
        raise Invalid("must be a number of seconds > 0, at least 0.000001")
    return duration


def fraction(value: object, from_env: bool) -> float:
    """A number from 0 to 1."""
    number = _number(value, from_env)
    if number is None or not 0.0 <= number <= 1.0:
        raise Invalid("must be a number from 0 to 1")
    return number


def interval(value: object, from_env: bool) -> timedelta:
    """A duration in the grammar of `--checkpoint` (slurm_ckpt.intervals)."""
    if not isinstance(value, str):
        # A bare TOML number is ambiguous (seconds? minutes?); insist on a string.
        raise Invalid(f'must be a string like "5m": use {ACCEPTED_FORMS}')
    try:
        return timedelta(seconds=parse_interval(value))
    except IntervalError as err:
        detail = f"{err.reason}; " if err.reason else ""
        raise Invalid(f"{detail}use {ACCEPTED_FORMS}") from err


def boolean(value: object, from_env: bool) -> bool:
    """A TOML boolean; from the environment also yes/no, on/off, 1/0 in any case."""
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        word = value.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise Invalid("must be true or false")
