"""doctor's pure parts and the checks that need no cluster: capability data, CRIU's
version line, the store root's mode, the CRIU copy's group; a failing check names its fix."""

from __future__ import annotations

import os
import pwd
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

from slurm_ckpt import proc
from slurm_ckpt.cli import doctor, humanize
from slurm_ckpt.cli.checks import cluster as cluster_checks
from slurm_ckpt.cli.checks import criu
from slurm_ckpt.cli.checks import store as store_checks
from slurm_ckpt.cli.checks.base import CheckResult
from slurm_ckpt.config import Settings, load_settings

GROUP, GID = "ckpt-criu-test", 4242


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
    parsed = criu.parse_file_caps(bytes.fromhex("0100000200000000000000000001000000000000"))
    assert parsed == criu.FileCaps(frozenset({40}), frozenset(), True)
    ptrace = criu.parse_file_caps(caps((1 << 40) | (1 << 19)))
    assert ptrace.permitted == {19, 40}


def test_file_caps_refuse_garbage() -> None:
    with pytest.raises(ValueError, match="too short"):
        criu.parse_file_caps(b"\x01\x00")
    with pytest.raises(ValueError, match="revision"):
        criu.parse_file_caps(b"\x00" * 20)


def test_criu_version_is_read_from_its_output() -> None:
    assert criu.criu_version("Version: 4.2.1\n") == (4, 2, 1)
    assert criu.criu_version("Version: 3.17\nGitID: v3.17\n") == (3, 17)
    assert criu.criu_version("criu: command not found") is None


@pytest.mark.parametrize(
    ("text", "ok"), [("32768\n", False), ("4194304\n", True), ("garbage", False)]
)
def test_pid_max_check_wants_the_64_bit_maximum(tmp_path: Path, text: str, ok: bool) -> None:
    path = tmp_path / "pid_max"
    path.write_text(text)
    result = criu.check_pid_max(load_settings(env={}, path=_empty(tmp_path)), path)
    assert result.ok is ok, result
    assert ok or "sysctl -w kernel.pid_max=4194304" in result.fix


def test_store_root_check_fails_with_its_fix(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    settings = load_settings(
        env={"SLURM_CKPT_PATHS_STORE_ROOT": str(missing)}, path=_empty(tmp_path)
    )
    result = store_checks.check_store_root(settings)
    assert not result.ok and result.detail == f"{missing} does not exist"
    assert result.fix == f"install -d -o root -m 0711 {missing} (on a filesystem every node sees)"


def _store_root_as(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, uid: int, mode: int
) -> CheckResult:
    """check_store_root on a folder that lstat reports with this owner and mode."""
    root = tmp_path / "store"
    root.mkdir(exist_ok=True)
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        st = real_lstat(path, *args, **kwargs)
        if Path(path) != root:
            return st
        fields = list(st)
        fields[0], fields[4] = stat.S_IFDIR | mode, uid
        return os.stat_result(fields)

    monkeypatch.setattr(os, "lstat", lstat)
    settings = load_settings(env={"SLURM_CKPT_PATHS_STORE_ROOT": str(root)}, path=_empty(tmp_path))
    return store_checks.check_store_root(settings)


@pytest.mark.parametrize("mode", [0o711, 0o755])
def test_store_root_check_accepts_a_root_owned_root_users_cannot_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int
) -> None:
    result = _store_root_as(monkeypatch, tmp_path, uid=0, mode=mode)
    assert result.ok and result.detail.endswith(f"mode {mode:04o}, owned by root")


@pytest.mark.parametrize(
    ("uid", "mode"),
    [(0, 0o1733), (0, 0o1777), (0, 0o775), (0, 0o757), (1000, 0o711), (1000, 0o755)],
)
def test_store_root_check_refuses_a_root_users_could_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uid: int, mode: int
) -> None:
    result = _store_root_as(monkeypatch, tmp_path, uid=uid, mode=mode)
    assert not result.ok
    assert f"mode {mode:04o}, owner uid {uid}" in result.detail
    assert "want root-owned and not writable by group or others (0711 or 0755)" in result.detail
    assert result.fix.startswith("install -d -o root -m 0711 ")


def test_capability_check_fails_on_a_file_without_one(tmp_path: Path) -> None:
    plain = tmp_path / "criu-copy"
    plain.write_bytes(b"\x7fELF")
    settings = load_settings(env={"SLURM_CKPT_CRIU_BINARY": str(plain)}, path=_empty(tmp_path))
    result = criu.check_criu_capability(settings)
    assert not result.ok and "carries no file capability" in result.detail
    assert result.fix.endswith(f"setcap cap_checkpoint_restore=ep {plain}")


def criu_settings(tmp_path: Path, binary: Path, group: str = GROUP) -> Settings:
    env = {"SLURM_CKPT_CRIU_BINARY": str(binary), "SLURM_CKPT_CRIU_GROUP": group}
    return load_settings(env=env, path=_empty(tmp_path))


def fake_criu_copy(
    monkeypatch: pytest.MonkeyPatch, binary: Path, *, uid: int, gid: int, mode: int
) -> None:
    """`binary` as doctor sees it: this owner and mode, with cap_checkpoint_restore=ep."""
    real_lstat, real_getxattr = os.lstat, os.getxattr

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if Path(path) == binary:
            return os.stat_result((stat.S_IFREG | mode, 1, 1, 1, uid, gid, 10, 0, 0, 0))
        return real_lstat(path, *args, **kwargs)

    def getxattr(path: Any, attribute: Any, *args: Any, **kwargs: Any) -> bytes:
        if Path(path) == binary and attribute == "security.capability":
            return caps(1 << criu.CAP_CHECKPOINT_RESTORE)
        return real_getxattr(path, attribute, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    monkeypatch.setattr(os, "getxattr", getxattr)


@pytest.fixture
def group_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(criu, "group_gid", lambda name: GID if name == GROUP else None)


@pytest.mark.usefixtures("group_exists")
def test_capability_check_wants_root_and_the_group_with_mode_0750(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "criu-unpriv"
    settings = criu_settings(tmp_path, binary)
    fake_criu_copy(monkeypatch, binary, uid=0, gid=GID, mode=0o750)
    result = criu.check_criu_capability(settings)
    assert result.ok, result.detail
    assert (
        result.detail == f"{binary}: root:{GROUP} 0750, cap_checkpoint_restore=ep and nothing more"
    )

    # Executable by everyone, as before groups: anyone could choose PIDs with it.
    fake_criu_copy(monkeypatch, binary, uid=0, gid=0, mode=0o755)
    result = criu.check_criu_capability(settings)
    assert not result.ok
    assert result.detail == f"{binary}: owner 0:0 mode 0755, want root:{GROUP} 0750"
    # chown clears file capabilities, so the fix sets the capability last.
    assert result.fix == (
        f"chown root:{GROUP} {binary} && chmod 0750 {binary} && "
        f"setcap cap_checkpoint_restore=ep {binary}"
    )


def test_capability_check_fails_when_the_group_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "criu-unpriv"
    fake_criu_copy(monkeypatch, binary, uid=0, gid=GID, mode=0o750)
    result = criu.check_criu_capability(criu_settings(tmp_path, binary, "no-such-group-x"))
    assert not result.ok and "group no-such-group-x does not exist" in result.detail


def test_group_check_names_the_group_and_nothing_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "criu-unpriv"
    missing = criu.check_criu_group(criu_settings(tmp_path, binary, "no-such-group-x"))
    assert missing.name == "criu-group" and not missing.ok
    assert missing.detail == "group no-such-group-x does not exist"
    assert missing.fix.startswith("groupadd --system no-such-group-x ")
    assert missing.fix.endswith(
        f"chown root:no-such-group-x {binary} && chmod 0750 {binary} && "
        f"setcap cap_checkpoint_restore=ep {binary}"
    )

    monkeypatch.setattr(criu, "group_gid", lambda name: GID if name == GROUP else None)
    found = criu.check_criu_group(criu_settings(tmp_path, binary))
    # Who is in it is not every reader's business: no member is named.
    assert found.ok and found.detail == f"group {GROUP} exists (gid {GID})"


def recorded_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    runs: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> proc.Completed:
        runs.append(list(argv))
        return proc.Completed(tuple(argv), 0, "Looks good.\n", "", 0.0)

    monkeypatch.setattr(proc, "run", run)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return runs


@pytest.mark.usefixtures("group_exists")
def test_unprivileged_check_runs_as_nobody_with_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "criu-unpriv"
    runs = recorded_runs(monkeypatch)
    result = criu.check_criu_unprivileged(criu_settings(tmp_path, binary))
    nobody = pwd.getpwnam("nobody")
    assert runs == [
        [
            "setpriv",
            f"--reuid={nobody.pw_uid}",
            f"--regid={nobody.pw_gid}",
            f"--groups={GID}",
            "--",
            str(binary),
            "check",
            "--unprivileged",
        ]
    ]
    assert result.ok and result.detail.endswith(f"passes as nobody in group {GROUP}")


def test_unprivileged_check_without_the_group_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = recorded_runs(monkeypatch)
    result = criu.check_criu_unprivileged(
        criu_settings(tmp_path, tmp_path / "criu-unpriv", "no-such-group-x")
    )
    assert runs == [] and not result.ok
    assert "group no-such-group-x" in result.detail and "chmod 0750" in result.fix


def test_doctor_runs_the_group_check() -> None:
    assert criu.check_criu_group in doctor.CHECKS


def test_a_crashing_check_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(settings: object) -> CheckResult:
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


@pytest.mark.parametrize(
    ("printed", "ok", "words"),
    [
        ("slurm-wlm 22.05.8\n", True, "Slurm 22.05.8: supported"),
        ("slurm 24.11.5\n", True, "Slurm 24.11.5: supported"),
        ("slurm 26.05.5\n", False, "26.05.5 is not a tested release"),
        ("slurm 21.08.8\n", False, "older than 22.05"),
        ("no version here\n", False, "unreadable version"),
    ],
)
def test_slurm_release_check_says_whether_the_release_is_supported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, printed: str, ok: bool, words: str
) -> None:
    def run(argv: list[str], **kwargs: Any) -> proc.Completed:
        assert argv == ["scontrol", "--version"]
        return proc.Completed(tuple(argv), 0, printed, "", 0.0)

    monkeypatch.setattr(proc, "run", run)

    found = cluster_checks.check_slurm_release(load_settings(env={}, path=_empty(tmp_path)))

    assert (found.ok, words in found.detail) == (ok, True), found
    assert found.ok or found.fix


def test_doctor_runs_the_slurm_release_check() -> None:
    assert cluster_checks.check_slurm_release in doctor.CHECKS
