from __future__ import annotations

import pickle

import pytest

from slurm_ckpt.errors import (
    CkptError,
    CommandFailed,
    CommandNotFound,
    CommandTimeout,
    ConfigError,
    IntervalError,
    ProcError,
)


def test_command_failed_message_has_command_code_and_last_stderr_line() -> None:
    err = CommandFailed(["sacct", "-j", "12 3"], 1, "out", "warning: x\nsacct: error: bad job\n\n")
    assert (
        str(err)
        == "command failed with exit code 1: sacct -j '12 3' (stderr: sacct: error: bad job)"
    )
    assert err.cmd == ("sacct", "-j", "12 3")
    assert (err.returncode, err.stdout, err.stderr) == (
        1,
        "out",
        "warning: x\nsacct: error: bad job\n\n",
    )


def test_command_failed_without_stderr() -> None:
    assert str(CommandFailed(["false"], 1, "", "")) == "command failed with exit code 1: false"


def test_command_failed_by_signal_names_the_signal() -> None:
    assert (
        str(CommandFailed(["sleep", "9"], -9, "", ""))
        == "command killed by signal SIGKILL: sleep 9"
    )


def test_command_with_newline_and_long_argument_stays_one_short_line() -> None:
    err = CommandFailed(["sh", "-c", "echo a\necho b", "x" * 1000], 2, "", "")
    assert len(str(err).splitlines()) == 1
    assert len(str(err)) < 300


def test_command_not_found_hint_depends_on_path() -> None:
    assert "install it" in str(CommandNotFound(["criu", "check"]))
    assert "check the path" in str(CommandNotFound(["/opt/x/criu", "check"]))


def test_command_timeout_message() -> None:
    err = CommandTimeout(["sleep", "100"], 2.5, "", "")
    assert str(err) == "command timed out after 2.5s and was killed: sleep 100"
    assert err.timeout == 2.5


def test_root_message_is_one_line() -> None:
    assert str(CkptError("first\nsecond\n")) == "first second"


def test_hierarchy() -> None:
    assert issubclass(CommandFailed, ProcError)
    assert issubclass(ProcError, CkptError)
    assert issubclass(IntervalError, ValueError)
    assert issubclass(IntervalError, CkptError)


@pytest.mark.parametrize(
    "err",
    [
        CkptError("plain"),
        ConfigError("config: bad", key="a.b", source="/etc/x.toml"),
        IntervalError("bad", value="abc", reason=None),
        CommandFailed(["false"], 1, "o", "e"),
        CommandTimeout(["sleep", "1"], 1.0, "o", "e"),
        CommandNotFound(["nope"]),
    ],
    ids=lambda err: type(err).__name__,
)
def test_errors_survive_pickling(err: CkptError) -> None:
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert vars(copy) == vars(err)
