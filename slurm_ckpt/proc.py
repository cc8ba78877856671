"""The one way slurm-ckpt runs an external command.

argv lists only (never a string split later), always a timeout, the child in
its own session so that a timeout can kill everything it started, and typed
errors carrying the command, exit code and output.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slurm_ckpt.errors import (
    CommandFailed,
    CommandNotFound,
    CommandTimeout,
    ProcError,
    format_command,
)

log = logging.getLogger(__name__)

# How long a timed-out command gets between SIGTERM and SIGKILL (CRIU thaws
# the tree it froze on SIGTERM; give it a moment).
DEFAULT_KILL_GRACE = 5.0

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class Completed:
    """A command that ran to its end (whatever its exit code)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float  # seconds


def run(
    argv: Sequence[StrPath],
    *,
    timeout: float,
    check: bool = True,
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: StrPath | None = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
) -> Completed:
    """Run `argv` and wait for it, at most `timeout` seconds.

    `env`, when given, is the child's whole environment (as with subprocess).
    Output is decoded as UTF-8, undecodable bytes replaced. The child gets
    /dev/null as stdin unless `input` is given. The command counts as done
    when the child has exited and its stdout and stderr are closed, so a
    background process still holding them runs into the timeout.

    Raises TypeError for a str or bytes `argv`; ValueError for an empty argv or
    a timeout <= 0; CommandNotFound when the executable does not exist;
    CommandTimeout after killing the child's process group on timeout;
    CommandFailed for a non-zero exit when `check` is true; ProcError when the
    command cannot be started for another reason.
    """
    if isinstance(argv, str | bytes):
        raise TypeError("argv must be a sequence of arguments, not a single string")
    cmd = tuple(os.fspath(arg) for arg in argv)
    if not cmd:
        raise ValueError("argv must not be empty")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, not {timeout!r}")
    data = input.encode() if isinstance(input, str) else input

    log.debug("run (timeout %gs): %s", timeout, format_command(cmd))
    started = time.monotonic()
    proc = _start(cmd, has_input=data is not None, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = _kill_group(proc, kill_grace)
        log.debug("timed out after %gs, process group %d killed", timeout, proc.pid)
        raise CommandTimeout(cmd, timeout, _decode(out), _decode(err)) from None
    except BaseException:
        # Interrupted (KeyboardInterrupt, ...): leave nothing running behind us.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise

    result = Completed(
        argv=cmd,
        returncode=proc.returncode,
        stdout=_decode(out),
        stderr=_decode(err),
        duration=time.monotonic() - started,
    )
    log.debug("exit code %d after %.3fs: %s", result.returncode, result.duration, cmd[0])
    if check and result.returncode != 0:
        raise CommandFailed(cmd, result.returncode, result.stdout, result.stderr)
    return result


def _start(
    cmd: tuple[str, ...],
    *,
    has_input: bool,
    env: Mapping[str, str] | None,
    cwd: StrPath | None,
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if has_input else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            # A new session makes the child the leader of its own process group,
            # which is what a timeout kills.
            start_new_session=True,
        )
    except FileNotFoundError as err:
        # Popen reports a missing cwd as FileNotFoundError too, naming the cwd.
        if (
            cwd is not None
            and err.filename is not None
            and os.fspath(err.filename) == os.fspath(cwd)
        ):
            raise ProcError(
                f"cannot run {format_command(cmd)}: working directory {os.fspath(cwd)} "
                "does not exist",
                cmd=cmd,
            ) from err
        raise CommandNotFound(cmd) from err
    except OSError as err:
        reason = err.strerror or str(err)
        raise ProcError(f"cannot run {format_command(cmd)}: {reason}", cmd=cmd) from err


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> tuple[bytes, bytes]:
    """SIGTERM the child's process group, SIGKILL it after `grace`, reap; return the output."""
    # The child is not reaped yet (communicate reaps it only after its pipes
    # close), so its pid, which is also the group id, cannot have been reused.
    _signal_group(proc.pid, signal.SIGTERM)
    output: tuple[bytes, bytes] | None
    try:
        output = proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        output = None
    # Also for members that ignore SIGTERM or do not hold our pipes. Should the
    # child have been reaped just now, its group id stays reserved while any
    # member lives, so this still cannot hit a stranger.
    _signal_group(proc.pid, signal.SIGKILL)
    if output is not None:
        return output
    try:
        return proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # A process that left the group (its own setsid) still holds our pipes, or
    # the group could not be signalled; give up on the output rather than hang.
    log.warning("process %d: output pipes still open after SIGKILL", proc.pid)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.error("process %d survived SIGKILL; leaving it unreaped", proc.pid)
    return b"", b""


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the whole group has already exited
    except PermissionError:
        # A member changed its credentials (setuid program); nothing more we can do.
        log.warning("process group %d: no permission to send %s", pgid, signum.name)


def _decode(data: bytes | None) -> str:
    return data.decode("utf-8", errors="replace") if data else ""
