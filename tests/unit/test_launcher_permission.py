"""Only members of the CRIU copy's group get checkpoints: the launcher's decision (pure),
what it reads from the system, and that a non-member's script runs unchanged with one
clear line in the log."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from slurm_ckpt.config import get_settings
from slurm_ckpt.launcher import permission
from slurm_ckpt.launcher.permission import Access, NotPermitted
from slurm_ckpt.store import folders, layout

BINARY = Path("/opt/slurm-ckpt/bin/criu-unpriv")
GROUP = "slurm-ckpt-criu"
CRIU_GID = 995
LINE = (
    f"user ckpt-carol is not in group {GROUP} that may run {BINARY}: "
    "running without checkpoints; an admin adds them"
)

# ckpt-carol, outside the group, and the copy as the set-up leaves it: root:<group> 0750.
OUTSIDER = Access(
    user="ckpt-carol",
    runnable=False,
    groups=frozenset({2903}),
    file_gid=CRIU_GID,
    file_group=GROUP,
    group_may_run=True,
    listed_member=False,
)


def test_a_user_outside_the_group_gets_one_clear_line() -> None:
    assert permission.refusal(OUTSIDER, BINARY, GROUP) == LINE


def test_the_files_group_is_named_even_when_the_setting_differs() -> None:
    assert permission.refusal(OUTSIDER, BINARY, "configured-group") == LINE


def test_the_configured_group_is_named_when_the_files_has_no_name_here() -> None:
    nameless = dataclasses.replace(OUTSIDER, file_group=None)
    assert permission.refusal(nameless, BINARY, "site-criu") == LINE.replace(GROUP, "site-criu")


def test_a_member_added_after_the_job_started_is_told_so() -> None:
    late = dataclasses.replace(OUTSIDER, listed_member=True)
    line = permission.refusal(late, BINARY, GROUP)
    assert line is not None
    assert line.startswith(f"user ckpt-carol is in group {GROUP} that may run {BINARY}, but")
    assert "running without checkpoints" in line


@pytest.mark.parametrize(
    "change",
    [
        {"runnable": True},  # a member, or root
        {"groups": frozenset({2903, CRIU_GID}), "runnable": True},
        {"file_gid": None, "file_group": None},  # missing: the probe reports it
        {"group_may_run": False},  # no execute bit for the group: not a group matter
        {"groups": frozenset({2903, CRIU_GID})},  # in the group, yet not runnable (noexec)
    ],
)
def test_nothing_to_say_when_the_group_is_not_the_reason(change: dict[str, object]) -> None:
    access = dataclasses.replace(OUTSIDER, **change)  # type: ignore[arg-type]
    assert permission.refusal(access, BINARY, GROUP) is None


def test_look_reads_this_process_and_the_file(tmp_path: Path) -> None:
    copy = tmp_path / "criu-unpriv"
    copy.write_bytes(b"\x7fELF")
    copy.chmod(0o750)
    seen = permission.look(copy)
    assert seen.file_gid == copy.stat().st_gid and seen.group_may_run
    assert seen.runnable == os.access(copy, os.X_OK)
    assert os.getgid() in seen.groups
    assert permission.look(tmp_path / "missing").file_gid is None


@pytest.fixture
def launcher_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A job's environment with an empty config, its store in tmp_path, no log file."""
    from slurm_ckpt.launcher import main

    config = tmp_path / "config.toml"
    config.write_text("")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_CKPT_CONFIG", str(config))
    monkeypatch.setenv("SLURM_CKPT_PATHS_STORE_ROOT", str(tmp_path))
    monkeypatch.setenv("SLURM_CKPT_CRIU_BINARY", str(BINARY))
    monkeypatch.setattr(
        folders, "ensure_job_dir", lambda root, user, job: layout.JobDir(root, user, job)
    )
    monkeypatch.setattr(main, "_log_to", lambda path: None)
    get_settings.cache_clear()
    saved = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, saved)
    get_settings.cache_clear()


@pytest.mark.usefixtures("launcher_env")
def test_set_up_refuses_a_user_outside_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_ckpt.launcher import main

    looked: list[Path] = []

    def look(binary: Path) -> Access:
        looked.append(binary)
        return OUTSIDER

    monkeypatch.setattr(permission, "look", look)
    with pytest.raises(NotPermitted) as refused:
        main._set_up(["/bin/bash"], Path("job.sh"), [])
    assert str(refused.value) == LINE and looked == [BINARY]


@pytest.mark.usefixtures("launcher_env")
def test_the_script_runs_unchanged_with_the_line_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from slurm_ckpt.launcher import main

    def refuse(interpreter: list[str], script: Path, args: list[str]) -> NoReturn:
        raise NotPermitted(LINE)

    execs: list[tuple[str, list[str]]] = []

    def execv(path: str, argv: list[str]) -> NoReturn:
        execs.append((path, argv))
        raise SystemExit(0)

    monkeypatch.setattr(main, "_set_up", refuse)
    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setattr(logging, "shutdown", lambda: None)  # would close pytest's handlers
    with caplog.at_level(logging.INFO, logger="slurm_ckpt"), pytest.raises(SystemExit):
        main.main(["/bin/bash -l", "job.sh", "a b", "c"])
    assert execs == [("/bin/bash", ["/bin/bash", "-l", "job.sh", "a b", "c"])]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("slurm_ckpt")] == [LINE]
