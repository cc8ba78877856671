"""The Slurm releases this project is tested on, and reading a release's version.

`make test` runs the whole suite on Debian's package and the end-to-end core
on each built release (README "Slurm releases"); doctor reports where the
running Slurm stands against this list.
"""

from __future__ import annotations

import re
from enum import StrEnum

# Major releases (year.month) and how the set-up gets each one.
TESTED: dict[str, str] = {
    "22.05": "Debian 12's package",
    "24.11": "built from Debian's source archive (Debian 13's package)",
}
OLDEST = (22, 5)  # older releases lack what the plugins use

_VERSION = re.compile(r"\b(\d{2})\.(\d{2})\.(\d+)\b")


class Support(StrEnum):
    TESTED = "tested"
    UNTESTED = "untested"  # newer than the oldest, not in TESTED: may work
    TOO_OLD = "too old"


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(24, 11, 5) from `scontrol --version` ("slurm 24.11.5", "slurm-wlm 22.05.8")."""
    match = _VERSION.search(text)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3])


def major(version: tuple[int, int, int]) -> str:
    return f"{version[0]:02d}.{version[1]:02d}"


def support(version: tuple[int, int, int]) -> Support:
    if version[:2] < OLDEST:
        return Support.TOO_OLD
    return Support.TESTED if major(version) in TESTED else Support.UNTESTED
