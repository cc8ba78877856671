"""No escape sequence from a user's file reaches an admin's terminal through ckpt-admin."""

from __future__ import annotations

import json

import pytest

from slurm_ckpt.cli.output import Column, Writer

HOSTILE = "boom\x1b]52;c;QUFBQQ==\x07 \x1b[2J\x9b31m\x00end"


def _controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F]


def test_lines_and_tables_show_control_characters_as_question_marks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = Writer()
    out.table([Column("SEQ"), Column("REASON", shrink=True)], [["1", HOSTILE]])
    out.note(HOSTILE)
    captured = capsys.readouterr()
    assert _controls(captured.out) == [] and _controls(captured.err) == []
    assert "boom?]52;c;QUFBQQ==?" in captured.out


def test_json_escapes_c0_and_c1_controls_and_keeps_the_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Writer(json_mode=True).document("checkpoints", {"error": HOSTILE + " …"})
    text = capsys.readouterr().out
    assert _controls(text) == []
    assert json.loads(text)["error"] == HOSTILE + " …"
