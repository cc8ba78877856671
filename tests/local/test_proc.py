"""slurm_ckpt.proc against real processes (needs only sh, sleep and /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from slurm_ckpt.errors import CommandFailed, CommandNotFound, CommandTimeout, ProcError
from slurm_ckpt.proc import Completed, run


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the parenthesised command name: state ppid pgrp ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def test_success_returns_output_and_duration() -> None:
    result = run(["sh", "-c", "echo out; echo err >&2"], timeout=10)
    assert isinstance(result, Completed)
    assert result.argv == ("sh", "-c", "echo out; echo err >&2")
    assert result.returncode == 0
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert 0 <= result.duration < 10


def test_input_reaches_stdin() -> None:
    assert run(["cat"], timeout=10, input="hello").stdout == "hello"
    assert run(["cat"], timeout=10, input=b"bytes").stdout == "bytes"


def test_stdin_is_empty_without_input() -> None:
    # Without input the child must not read from our stdin.
    assert run(["cat"], timeout=10).stdout == ""


def test_env_and_cwd(tmp_path: Path) -> None:
    result = run(
        ["/bin/sh", "-c", 'echo "$FOO"; pwd'], timeout=10, env={"FOO": "bar"}, cwd=tmp_path
    )
    assert result.stdout.split("\n")[:2] == ["bar", str(tmp_path)]


def test_child_runs_in_its_own_session() -> None:
    result = run(["sh", "-c", "ps -o sid= -p $$"], timeout=10)
    assert int(result.stdout) != os.getsid(0)


def test_undecodable_output_is_replaced() -> None:
    assert run(["printf", "\\377ok"], timeout=10).stdout == "\ufffdok"


def test_nonzero_exit_with_check_raises() -> None:
    with pytest.raises(CommandFailed) as info:
        run(["sh", "-c", "echo partial; echo first >&2; echo boom >&2; exit 3"], timeout=10)
    err = info.value
    assert err.returncode == 3
    assert err.stdout == "partial\n"
    assert err.stderr == "first\nboom\n"
    assert err.cmd == ("sh", "-c", "echo partial; echo first >&2; echo boom >&2; exit 3")
    assert str(err).startswith("command failed with exit code 3: sh -c ")
    assert str(err).endswith("(stderr: boom)")


def test_nonzero_exit_without_check_returns() -> None:
    result = run(["sh", "-c", "echo e >&2; exit 4"], timeout=10, check=False)
    assert result.returncode == 4
    assert result.stderr == "e\n"


def test_missing_binary() -> None:
    with pytest.raises(CommandNotFound) as info:
        run(["/nonexistent/slurm-ckpt-no-such-binary", "--version"], timeout=10)
    assert info.value.cmd[0] == "/nonexistent/slurm-ckpt-no-such-binary"


def test_missing_binary_on_path() -> None:
    with pytest.raises(CommandNotFound):
        run(["slurm-ckpt-no-such-binary"], timeout=10)


def test_missing_cwd_is_not_reported_as_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(ProcError) as info:
        run(["true"], timeout=10, cwd=tmp_path / "absent")
    assert not isinstance(info.value, CommandNotFound)
    assert "working directory" in str(info.value)


def test_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ProcError) as info:
        run([script], timeout=10)
    assert "Permission denied" in str(info.value)


def wait_until_empty(pgid: int, limit: float = 5.0) -> list[int]:
    """The group's live members once it is empty or after `limit` seconds."""
    deadline = time.monotonic() + limit
    members = group_members(pgid)
    while members and time.monotonic() < deadline:
        time.sleep(0.05)
        members = group_members(pgid)
    return members


def test_group_members_sees_a_live_group() -> None:
    # Guards the check below: an empty answer must mean "gone", not "not found".
    proc = subprocess.Popen(["sleep", "100"], start_new_session=True)
    try:
        assert group_members(proc.pid) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_timeout_kills_the_whole_group() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        # sh prints its pid, which is also the group id of everything it starts.
        run(["sh", "-c", "echo $$; sleep 100 & sleep 100"], timeout=1, kill_grace=2)
    err = info.value
    assert time.monotonic() - started < 10
    assert err.timeout == 1
    pgid = int(err.stdout)
    assert pgid != os.getpgid(0)
    assert wait_until_empty(pgid) == []


def test_timeout_sigkills_a_child_that_ignores_sigterm() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        run(["sh", "-c", "trap '' TERM; echo $$; exec sleep 100"], timeout=0.5, kill_grace=0.5)
    assert time.monotonic() - started < 5
    assert wait_until_empty(int(info.value.stdout)) == []


def test_timeout_does_not_hang_on_a_process_that_left_the_group(tmp_path: Path) -> None:
    # The escaped process keeps our pipes open; run must give up on them, not wait.
    pidfile = tmp_path / "pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 100' & wait"
    started = time.monotonic()
    try:
        with pytest.raises(CommandTimeout):
            run(["sh", "-c", script], timeout=0.5, kill_grace=0.5)
        assert time.monotonic() - started < 5
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_str_argv_is_rejected() -> None:
    with pytest.raises(TypeError):
        run("echo hello", timeout=10)


def test_empty_argv_and_bad_timeout_are_rejected() -> None:
    with pytest.raises(ValueError):
        run([], timeout=10)
    with pytest.raises(ValueError):
        run(["true"], timeout=0)
