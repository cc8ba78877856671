"""doctor's pure parts and the checks that need no cluster: capability data, CRIU's
version line, the store root's mode; a failing check names its fix."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from slurm_ckpt.cli import doctor, humanize
from slurm_ckpt.config import load_settings


def caps(permitted: int, inheritable: int = 0, effective: bool = True) -> bytes:
    magic = 0x02000000 | (1 if effective else 0)
    return struct.pack(
        "<IIIII",
        magic,
        permitted & 0xFFFFFFFF,
        inheritable & 0xFFFFFFFF,
        permitted >> 32,
        inheritable >> 32,
    )


def test_file_caps_of_the_criu_copy_decode_to_cap_checkpoint_restore() -> None:
    # The bytes getxattr returns for `setcap cap_checkpoint_restore=ep`.
    parsed = doctor.parse_file_caps(bytes.fromhex("0100000200000000000000000001000000000000"))
    assert parsed == doctor.FileCaps(frozenset({40}), frozenset(), True)
    ptrace = doctor.parse_file_caps(caps((1 << 40) | (1 << 19)))
    assert ptrace.permitted == {19, 40}


def test_file_caps_refuse_garbage() -> None:
    with pytest.raises(ValueError, match="too short"):
        doctor.parse_file_caps(b"\x01\x00")
    with pytest.raises(ValueError, match="revision"):
        doctor.parse_file_caps(b"\x00" * 20)


def test_criu_version_is_read_from_its_output() -> None:
    assert doctor.criu_version("Version: 4.2.1\n") == (4, 2, 1)
    assert doctor.criu_version("Version: 3.17\nGitID: v3.17\n") == (3, 17)
    assert doctor.criu_version("criu: command not found") is None


def test_store_root_check_fails_with_its_fix(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    settings = load_settings(
        env={"SLURM_CKPT_PATHS_STORE_ROOT": str(missing)}, path=_empty(tmp_path)
    )
    result = doctor.check_store_root(settings)
    assert not result.ok and result.detail == f"{missing} does not exist"
    assert result.fix == f"install -d -o root -m 1733 {missing} (on a filesystem every node sees)"
    missing.mkdir(mode=0o755)
    result = doctor.check_store_root(
        load_settings(env={"SLURM_CKPT_PATHS_STORE_ROOT": str(missing)}, path=_empty(tmp_path))
    )
    assert not result.ok and "want 1733" in result.detail


def test_capability_check_fails_on_a_file_without_one(tmp_path: Path) -> None:
    plain = tmp_path / "criu-copy"
    plain.write_bytes(b"\x7fELF")
    settings = load_settings(env={"SLURM_CKPT_CRIU_BINARY": str(plain)}, path=_empty(tmp_path))
    result = doctor.check_criu_capability(settings)
    assert not result.ok and "carries no file capability" in result.detail
    assert result.fix.endswith(f"setcap cap_checkpoint_restore=ep {plain}")


def test_a_crashing_check_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(settings: object) -> doctor.CheckResult:
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "CHECKS", (broken,))
    (result,) = doctor.run_checks(load_settings(env={}, path=_empty(tmp_path)))
    assert not result.ok and "boom" in result.detail


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (1023, "1023B"), (1536, "1.5K"), (300 << 20, "300M"), (5 << 40, "5.0T")],
)
def test_short_sizes(n: int, text: str) -> None:
    assert humanize.size_short(n) == text


@pytest.mark.parametrize(
    ("seconds", "exact", "rough"),
    [
        (45, "45s", "45s"),
        (90, "1m30s", "1m"),
        (1800, "30m", "30m"),
        (5400, "1h30m", "1h30m"),
        (93600, "1d2h", "1d2h"),
        (40 * 86400, "40d", "40d"),
    ],
)
def test_durations(seconds: int, exact: str, rough: str) -> None:
    assert humanize.duration(seconds) == exact
    assert humanize.coarse(seconds) == rough


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path
