"""The one writer of `ckpt-admin`: aligned tables and fields for people, JSON for scripts.

Every command prints through a `Writer`, so `--json` works everywhere: a JSON
document is one object with `schema_version` and `kind` first (see
docs/cli-json.md). Tables fit the terminal (100 columns when stdout is not a
terminal and $COLUMNS is unset); progress goes to stderr so stdout stays
clean for pipes.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from slurm_ckpt.store import untrusted

SCHEMA_VERSION = 1
DEFAULT_WIDTH = 100


@dataclass(frozen=True)
class Column:
    header: str
    justify: Literal["left", "right"] = "left"
    shrink: bool = False  # may be cut with "…" when the table is wider than the terminal


class Writer:
    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
        # Resolved now, not at import: click's test runner swaps the streams per call.
        self.out = Console(file=sys.stdout, width=self.width, highlight=False, emoji=False)
        self.err = Console(file=sys.stderr, width=self.width, highlight=False, emoji=False)

    # Scripts

    def document(self, kind: str, body: Mapping[str, Any]) -> None:
        """Print one JSON document of `kind` (schema_version 1)."""
        doc = {"schema_version": SCHEMA_VERSION, "kind": kind, **body}
        text = json.dumps(doc, indent=2, ensure_ascii=False)
        # json escapes C0 controls; C1 ones (a terminal's CSI) only appear in strings.
        sys.stdout.write(_C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")

    # People

    def table(
        self, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, empty: str = ""
    ) -> None:
        """An aligned table without borders; `empty` is printed instead of a header alone."""
        if not rows and empty:
            self.line(empty)
            return
        for line in render_table(columns, rows, self.width):
            self.line(line)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """`label:  value` lines with the values aligned."""
        width = max((len(label) for label, _ in pairs), default=0) + 2
        for label, value in pairs:
            self.line(f"{label + ':':<{width}}{value}")

    def line(self, text: str = "") -> None:
        # Texts come from catalog rows that users' files fed: no escape sequences.
        self.out.print(Text(untrusted.printable(text)), soft_wrap=True)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal, on stderr."""
        self.err.print(Text(untrusted.printable(text)), soft_wrap=True)

    # Progress, on stderr

    @contextmanager
    def spinner(self, title: str) -> Iterator[Callable[[str], None]]:
        """A spinner with a status text; yields `update(text)`.

        Without a terminal each new status is one line, so logs show the steps.
        """
        if not self.err.is_terminal:
            last = [""]

            def update_line(text: str) -> None:
                if text and text != last[0]:
                    last[0] = text
                    self.note(f"{title}: {text}")

            yield update_line
            return
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
        )
        with progress:
            task = progress.add_task(title)

            def update(text: str) -> None:
                progress.update(task, description=f"{title}: {text}" if text else title)

            yield update

    @contextmanager
    def bytes_bar(self, title: str) -> Iterator[Callable[[int, int], None]]:
        """A progress bar in bytes; yields `report(done, total)`."""
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            console=self.err,
            transient=True,
            disable=not self.err.is_terminal,
        )
        with progress:
            task = progress.add_task(title, total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            yield report


_C1 = re.compile("[\x80-\x9f]")

GAP = " "  # one space, as squeue does: the problem column needs the room
MIN_SHRUNK = 12  # a shrinkable column keeps at least this many characters


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """The lines of an aligned table at most `width` wide where the shrinkable columns
    allow it; cells cut to fit end in "…". Pure, so golden files pin the layout."""
    widths = [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    excess = sum(widths) + len(GAP) * (len(columns) - 1) - width
    for i in reversed(range(len(columns))):
        if excess <= 0:
            break
        if columns[i].shrink:
            floor = max(len(columns[i].header), MIN_SHRUNK)
            cut = min(excess, max(widths[i] - floor, 0))
            widths[i] -= cut
            excess -= cut

    def line(cells: Sequence[str]) -> str:
        parts = []
        for cell, column, w in zip(cells, columns, widths, strict=True):
            text = cell if len(cell) <= w else cell[: w - 1] + "…"
            parts.append(text.rjust(w) if column.justify == "right" else text.ljust(w))
        return GAP.join(parts).rstrip()

    return [line([c.header for c in columns]), *(line(row) for row in rows)]
