"""Reading a Slurm release's version, and where it stands against the tested ones."""

from __future__ import annotations

import pytest

from slurm_ckpt.slurm import releases
from slurm_ckpt.slurm.releases import Support


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("slurm-wlm 22.05.8", (22, 5, 8)),
        ("slurm 24.11.5\n", (24, 11, 5)),
        ("slurm 26.05.0-0rc1", (26, 5, 0)),
        ("slurm", None),
        ("slurm 2.6", None),
    ],
)
def test_versions_are_read_from_scontrols_version_line(
    text: str, version: tuple[int, int, int] | None
) -> None:
    assert releases.parse_version(text) == version


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ((22, 5, 8), Support.TESTED),
        ((24, 11, 0), Support.TESTED),
        ((23, 11, 10), Support.UNTESTED),
        ((26, 5, 5), Support.UNTESTED),
        ((21, 8, 8), Support.TOO_OLD),
    ],
)
def test_support_follows_the_tested_majors(
    version: tuple[int, int, int], expected: Support
) -> None:
    assert releases.support(version) == expected


def test_majors_print_as_slurm_names_them() -> None:
    assert releases.major((22, 5, 8)) == "22.05"
