from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_ckpt.errors import IntervalError
from slurm_ckpt.intervals import (
    DAY,
    HOUR,
    MAX_INTERVAL_SECONDS,
    MINUTE,
    parse_interval,
)

VECTORS = Path(__file__).resolve().parent.parent / "data" / "interval_vectors.tsv"
ACCEPTED = ("90s", "30m", "1h30m", "2d", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS")


def read_vectors() -> list[tuple[str, int | None]]:
    """Rows of the vector file as (input, seconds or None for invalid)."""
    rows: list[tuple[str, int | None]] = []
    for number, line in enumerate(VECTORS.read_text(encoding="utf-8").split("\n"), start=1):
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t", 1)
        if len(fields) != 2 or not re.fullmatch(r"[0-9]+|invalid", fields[1]):
            raise AssertionError(f"{VECTORS}:{number}: malformed vector line {line!r}")
        text = "" if fields[0] == "<empty>" else fields[0]
        rows.append((text, None if fields[1] == "invalid" else int(fields[1])))
    return rows


VECTOR_ROWS = read_vectors()


def test_vector_file_is_substantial_and_unique() -> None:
    inputs = [text for text, _ in VECTOR_ROWS]
    assert len(inputs) >= 50
    assert len(set(inputs)) == len(inputs)
    # Both outcomes and the required rows are present.
    expected = dict(VECTOR_ROWS)
    assert expected[""] is None
    for bad in ("abc", "0", "-5m", "10y"):
        assert expected[bad] is None
    assert expected["365d"] == MAX_INTERVAL_SECONDS
    assert expected[f"{MAX_INTERVAL_SECONDS + 1}s"] is None


@pytest.mark.parametrize(("text", "seconds"), VECTOR_ROWS, ids=[repr(t) for t, _ in VECTOR_ROWS])
def test_vector(text: str, seconds: int | None) -> None:
    if seconds is None:
        with pytest.raises(IntervalError):
            parse_interval(text)
    else:
        assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["abc", "0", "-5m", "10y"])
def test_message_is_one_line_with_the_value_and_accepted_forms(text: str) -> None:
    with pytest.raises(IntervalError) as info:
        parse_interval(text)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert f"'{text}'" in message
    for form in ACCEPTED:
        assert form in message
    assert info.value.value == text


def test_interval_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_interval("abc")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("0", "the total is 0"),
        ("-5m", "a sign is not allowed"),
        ("366d", "more than 365 days"),
        ("1:60", "seconds must be below 60"),
        ("1-24", "hours must be below 24"),
        ("1h 30m", "contains whitespace"),
        ("abc", None),
    ],
)
def test_reason(text: str, reason: str | None) -> None:
    with pytest.raises(IntervalError) as info:
        parse_interval(text)
    assert info.value.reason == reason


def test_message_of_control_characters_stays_one_line() -> None:
    with pytest.raises(IntervalError) as info:
        parse_interval("1\n2\r\u2028")
    assert len(str(info.value).splitlines()) == 1


def test_message_of_a_long_value_is_shortened() -> None:
    with pytest.raises(IntervalError) as info:
        parse_interval("9" * 1000)
    assert len(str(info.value)) < 300


@given(
    st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=1_000_000)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=100_000_000)),
)
def test_unit_form_composition_parses_to_the_sum(
    days: int | None, hours: int | None, minutes: int | None, seconds: int | None
) -> None:
    parts = [(days, "d", DAY), (hours, "h", HOUR), (minutes, "m", MINUTE), (seconds, "s", 1)]
    text = "".join(f"{n}{unit}" for n, unit, _ in parts if n is not None)
    total = sum(n * size for n, _, size in parts if n is not None)
    if text and 0 < total <= MAX_INTERVAL_SECONDS:
        assert parse_interval(text) == total
    else:
        with pytest.raises(IntervalError):
            parse_interval(text)


@given(
    st.integers(min_value=0, max_value=400),
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
)
def test_slurm_day_form_parses_to_the_sum(
    days: int, hours: int, minutes: int, seconds: int
) -> None:
    text = f"{days}-{hours:02d}:{minutes:02d}:{seconds:02d}"
    total = days * DAY + hours * HOUR + minutes * MINUTE + seconds
    if 0 < total <= MAX_INTERVAL_SECONDS:
        assert parse_interval(text) == total
    else:
        with pytest.raises(IntervalError):
            parse_interval(text)


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_interval_error(text: str) -> None:
    try:
        seconds = parse_interval(text)
    except IntervalError as err:
        assert len(str(err).splitlines()) == 1
    else:
        assert 0 < seconds <= MAX_INTERVAL_SECONDS


@given(st.text(alphabet="0123456789dhms:-", max_size=16))
def test_near_miss_text_parses_or_raises_interval_error(text: str) -> None:
    # Random text rarely gets past the first character; this alphabet reaches
    # every branch of the grammar.
    try:
        seconds = parse_interval(text)
    except IntervalError:
        return
    assert 0 < seconds <= MAX_INTERVAL_SECONDS
