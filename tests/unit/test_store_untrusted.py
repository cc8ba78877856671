"""The reader of user-written bytes: bounded, never blocking, never following a link."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_ckpt.store import untrusted


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, untrusted.DIR_FLAGS)
    yield fd
    os.close(fd)


def test_a_regular_file_is_read(tmp_path: Path, folder: int) -> None:
    (tmp_path / "r.json").write_bytes(b'{"ok": true}')
    data = untrusted.read_file(folder, "r.json", 100, owner=os.geteuid())
    assert untrusted.loads(data or b"", "r.json") == {"ok": True}


def test_a_missing_file_is_none(folder: int) -> None:
    assert untrusted.read_file(folder, "absent.json", 100, owner=None) is None


def test_a_symlink_is_refused_even_to_a_readable_file(tmp_path: Path, folder: int) -> None:
    (tmp_path / "target").write_bytes(b"{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "target")
    with pytest.raises(untrusted.Untrusted, match="symlink"):
        untrusted.read_file(folder, "link.json", 100, owner=None)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path, folder: int) -> None:
    os.mkfifo(tmp_path / "result.json")
    with pytest.raises(untrusted.Untrusted, match="not a regular file"):
        untrusted.read_file(folder, "result.json", 100, owner=None)


def test_a_device_is_refused(folder: int) -> None:
    with pytest.raises(untrusted.Untrusted):
        untrusted.read_file(folder, "/dev/zero", 100, owner=None)


def test_a_file_of_another_owner_is_refused(tmp_path: Path, folder: int) -> None:
    (tmp_path / "r.json").write_bytes(b"{}")
    with pytest.raises(untrusted.Untrusted, match="owned by uid"):
        untrusted.read_file(folder, "r.json", 100, owner=os.geteuid() + 1)


def test_the_cap_is_enforced_while_reading(tmp_path: Path, folder: int) -> None:
    (tmp_path / "big").write_bytes(b" " * 101)
    with pytest.raises(untrusted.Untrusted, match="larger than 100"):
        untrusted.read_file(folder, "big", 100, owner=None)
    (tmp_path / "fits").write_bytes(b" " * 100)
    assert untrusted.read_file(folder, "fits", 100, owner=None) == b" " * 100


@pytest.mark.parametrize(
    "data",
    [b"[" * 65536, b"{" * 40 + b"}" * 40, b'{"a":' * 33 + b"1" + b"}" * 33],
)
def test_deep_nesting_is_refused_before_parsing(data: bytes) -> None:
    with pytest.raises(untrusted.Untrusted, match="nested deeper"):
        untrusted.loads(data, "x")


def test_brackets_inside_strings_do_not_count() -> None:
    assert untrusted.loads(b'{"error": "' + b"[" * 5000 + b'"}', "x") == {"error": "[" * 5000}


@pytest.mark.parametrize("data", [b"NaN", b"[Infinity]", b"\xff", b'{"a": 1', b""])
def test_malformed_json_is_untrusted(data: bytes) -> None:
    with pytest.raises(untrusted.Untrusted):
        untrusted.loads(data, "x")


def test_text_removes_control_characters_and_bounds_length() -> None:
    shown = untrusted.text("ok\x1b]52;c;QUFBQQ==\x07 then\x1b[2J\x9b31m", 100)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown.startswith("ok ]52;c;QUFBQQ==")
    assert len(untrusted.text("x" * 5000, 50)) == 50


@pytest.mark.parametrize(
    ("value", "expected"), [(5, 5), (True, None), (2**63, None), (-1, None), ("5", None)]
)
def test_integer_bounds(value: object, expected: int | None) -> None:
    assert untrusted.integer(value) == expected


def test_text_and_printable_hide_bidi_overrides_zero_widths_and_surrogates() -> None:
    hostile = "ok\u202egnp.exe\u200b\ud800\u2028x"
    for shown in (untrusted.text(hostile), untrusted.printable(hostile)):
        assert not any(c in shown for c in "\u202e\u200b\ud800\u2028")
        shown.encode("utf-8")  # storable: no lone surrogate left
    assert untrusted.printable("naïve …") == "naïve …"
