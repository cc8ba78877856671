"""Checkpoint intervals: text <-> seconds. Pure; no I/O.

The grammar (the SPANK plugin in C implements the same one, checked against
tests/data/interval_vectors.tsv):

- The text is 1 to MAX_INPUT_LENGTH characters: no whitespace, no leading
  sign. A number is one or more ASCII digits (leading zeros allowed).
- Unit form: ``[Nd][Nh][Nm][Ns]``, lowercase units, each at most once, in this
  order, at least one present: ``90s``, ``30m``, ``1h30m``, ``2d``, ``1d12h``.
- A bare number is minutes, as in Slurm: ``30`` is 1800 seconds.
- Slurm time: ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.
  Minutes and seconds are below 60 in every colon form, hours below 24 after a
  day count; the hours of ``HH:MM:SS`` have no upper bound of their own.
- The total is greater than 0 and at most MAX_INTERVAL_SECONDS (365 days).
"""

from __future__ import annotations

import re

from slurm_ckpt.errors import IntervalError

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

MAX_INTERVAL_SECONDS = 365 * DAY
# Far longer than any sensible interval; bounds the numbers for the C parser.
MAX_INPUT_LENGTH = 32

ACCEPTED_FORMS = (
    "a duration like 90s, 30m, 1h30m, 2d or a Slurm time like MM, MM:SS, HH:MM:SS, "
    "D-HH, D-HH:MM, D-HH:MM:SS (greater than 0, at most 365 days)"
)

# [0-9] rather than \d: \d also matches non-ASCII digits, which the C parser rejects.
_UNIT_FORM = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_MINUTES = re.compile(r"[0-9]+")
_CLOCK = re.compile(r"(?:([0-9]+):)?([0-9]+):([0-9]+)")  # [HH:]MM:SS
_DAYS = re.compile(r"([0-9]+)-([0-9]+)(?::([0-9]+)(?::([0-9]+))?)?")  # D-HH[:MM[:SS]]

_UNITS = (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1))


def parse_interval(text: str) -> int:
    """Return the number of seconds `text` stands for.

    Raises IntervalError (a ValueError) with a one-line message when `text`
    does not follow the grammar in this module's docstring.
    """
    if not text:
        raise _invalid(text, "empty")
    if len(text) > MAX_INPUT_LENGTH:
        raise _invalid(text, f"longer than {MAX_INPUT_LENGTH} characters")
    if any(ch.isspace() for ch in text):
        raise _invalid(text, "contains whitespace")
    if text[0] in "+-":
        raise _invalid(text, "a sign is not allowed")

    if match := _UNIT_FORM.fullmatch(text):
        # The pattern also matches "", which was rejected above.
        total = sum(int(n) * size for n, (_, size) in zip(match.groups(), _UNITS, strict=True) if n)
    elif _MINUTES.fullmatch(text):
        total = int(text) * MINUTE
    elif match := _CLOCK.fullmatch(text):
        hours, minutes, seconds = (int(n) if n else 0 for n in match.groups())
        _check_below(text, minutes, 60, "minutes")
        _check_below(text, seconds, 60, "seconds")
        total = hours * HOUR + minutes * MINUTE + seconds
    elif match := _DAYS.fullmatch(text):
        days, hours, minutes, seconds = (int(n) if n else 0 for n in match.groups())
        _check_below(text, hours, 24, "hours")
        _check_below(text, minutes, 60, "minutes")
        _check_below(text, seconds, 60, "seconds")
        total = days * DAY + hours * HOUR + minutes * MINUTE + seconds
    else:
        raise _invalid(text)

    if total <= 0:
        raise _invalid(text, "the total is 0")
    if total > MAX_INTERVAL_SECONDS:
        raise _invalid(text, "more than 365 days")
    return total


def _check_below(text: str, value: int, limit: int, name: str) -> None:
    if value >= limit:
        raise _invalid(text, f"{name} must be below {limit}")


def _invalid(text: str, reason: str | None = None) -> IntervalError:
    shown = text if len(text) <= MAX_INPUT_LENGTH else text[:MAX_INPUT_LENGTH] + "..."
    # repr() quotes the value and escapes control characters, keeping the message one line.
    detail = f"{reason}; " if reason else ""
    return IntervalError(
        f"invalid checkpoint interval {shown!r}: {detail}use {ACCEPTED_FORMS}",
        value=text,
        reason=reason,
    )
