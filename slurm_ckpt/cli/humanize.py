"""Sizes, ages and times as people read them in tables; pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_SHORT_UNITS = ("B", "K", "M", "G", "T", "P")


def size(n: int | None) -> str:
    """`1536` -> `1.5 KiB`; binary units, three significant digits at most."""
    return _size(n, _UNITS, " ", 100)


def size_short(n: int | None) -> str:
    """`1.3M`, `306M`, `12G` as `ls -h` writes them, for narrow table columns."""
    return _size(n, _SHORT_UNITS, "", 10)


def _size(n: int | None, units: tuple[str, ...], sep: str, decimal_below: float) -> str:
    """`n` bytes in the largest of the binary `units` that keeps it below 1024, with
    one decimal when it is below `decimal_below`; whole bytes as they are."""
    if n is None:
        return "-"
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            if unit == units[0]:
                return f"{int(value)}{sep}{unit}"
            return f"{value:.1f}{sep}{unit}" if value < decimal_below else f"{value:.0f}{sep}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # the loop returns at the last unit


def duration(seconds: float | None) -> str:
    """A span in at most two units, exact below ten minutes: `45s`, `1m30s`, `30m`,
    `3h12m`, `2d3h`."""
    if seconds is None:
        return "-"
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, rest = divmod(s, 60)
        return f"{m}m{rest}s" if rest and m < 10 else f"{m}m"
    return coarse(s)


def coarse(seconds: float) -> str:
    """A span in at most five characters for ages: `45s`, `7m`, `3h12m`, `2d3h`, `40d`."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, rest = divmod(s, 3600)
        return f"{h}h{rest // 60}m" if rest // 60 else f"{h}h"
    d, rest = divmod(s, 86400)
    return f"{d}d{rest // 3600}h" if rest // 3600 and d < 10 else f"{d}d"


def seconds_text(seconds: float | None) -> str:
    """A measured duration (dump, freeze): `0.42s`, `12.3s`, `3m5s`."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return duration(seconds)


def age(then: datetime | None, now: datetime) -> str:
    """How long ago: `8m`, `2d3h`; `-` for never."""
    return "-" if then is None else coarse((now - then).total_seconds())


def until(when: datetime | None, now: datetime) -> str:
    """How long from now: `in 22m`; `now` once due."""
    if when is None:
        return "-"
    left = (when - now).total_seconds()
    return "now" if left < 1 else f"in {coarse(left)}"


def local_time(when: datetime | None) -> str:
    """`03-01 11:52` in the local time zone; `-` for none."""
    return "-" if when is None else when.astimezone().strftime("%m-%d %H:%M")


def recent_time(when: datetime | None, now: datetime) -> str:
    """`11:52` within the last day, else `03-01` (as `ls -l` does), local time; `-` for none."""
    if when is None:
        return "-"
    if timedelta(0) <= now - when < timedelta(days=1):
        return when.astimezone().strftime("%H:%M")
    return when.astimezone().strftime("%m-%d")


def full_time(when: datetime | None) -> str:
    """`2026-03-01 11:52:07 CET`, for detail views."""
    return "-" if when is None else when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(when: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, whole seconds, for JSON; None stays None."""
    if when is None:
        return None
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a time without an offset is taken as UTC. Raises ValueError."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
