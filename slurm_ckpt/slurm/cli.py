"""The Slurm adapter over the command-line tools (squeue, sinfo, scontrol, scancel).

Works with every Slurm of the last years: it asks for explicit field lists in
formats that have not changed across releases, parses them with the pure
functions of `parse`, and turns failures into typed errors. A controller that
does not answer is asked again a bounded number of times, then reported.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence

from slurm_ckpt import proc
from slurm_ckpt.errors import (
    CommandFailed,
    CommandTimeout,
    JobNotFound,
    ProcError,
    SlurmRejected,
    SlurmUnavailable,
)
from slurm_ckpt.slurm import parse, states
from slurm_ckpt.slurm.base import JobInfo, NodeInfo

log = logging.getLogger(__name__)

# stderr of a Slurm client that could not reach (or hear back from) the
# controller; only these are worth asking again.
TRANSIENT_ERRORS = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Zero Bytes were transmitted"
    r"|Connection refused|Connection timed out|Connection reset|backup controller in standby"
    r"|Communication connection failure|Resource temporarily unavailable"
    r"|Transport endpoint is not connected|Slurm temporarily unable",
    re.IGNORECASE,
)
_JOB_NOT_FOUND = re.compile(r"Invalid job id( specified|: [0-9]+)", re.IGNORECASE)
# scancel --verbose when its --state filter left the job out.
_SIGNAL = re.compile(r"(SIG)?[A-Z0-9]{2,8}|[0-9]{1,2}")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Runner = Callable[..., proc.Completed]


class CliSlurm:
    """SlurmAdapter over Slurm's command-line tools."""

    name = "cli"

    def __init__(
        self,
        *,
        command_timeout: float = 30.0,
        max_attempts: int = 3,
        retry_delay: float = 2.0,
        runner: Runner = proc.run,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
        self._timeout = command_timeout
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._run_command = runner
        self._sleep = sleep

    # -- queries -------------------------------------------------------------

    def list_checkpointed_jobs(self) -> list[JobInfo]:
        # All jobs in one call (squeue cannot filter on admin_comment); the
        # finished ones the controller still keeps are included so a poll sees
        # how a job ended.
        done = self._run(
            [
                "squeue",
                "--noheader",
                "--all",
                "--array",
                "--states=all",
                f"--Format={parse.SQUEUE_FORMAT}",
            ],
            env=parse.TIME_FORMAT_ENV,
        )
        return parse.parse_squeue(done.stdout)

    def node_states(self) -> dict[str, NodeInfo]:
        done = self._run(["sinfo", "--noheader", "--Node", f"--format={parse.SINFO_FORMAT}"])
        return parse.parse_sinfo(done.stdout)

    # -- requests ------------------------------------------------------------

    def signal_batch(self, job_id: int, signal: str = "USR1") -> None:
        if not _SIGNAL.fullmatch(signal):
            raise ValueError(f"not a signal name: {signal!r}")
        # scancel retries the signal of a job that does not run (pending, held) for a
        # minute and a half, then fails as if Slurm were down: ask for this one job's
        # state first (one job's record; scancel's own --state filter would load the
        # whole job table at every checkpoint).
        state = self._run(
            ["squeue", "--noheader", f"--jobs={_job(job_id)}", "--format=%T"], job_id=job_id
        ).stdout.strip()
        if state and state not in states.RUNNING:
            raise SlurmRejected(f"job {job_id} is {state}, not running")
        self._run(["scancel", f"--signal={signal}", "--batch", _job(job_id)], job_id=job_id)

    def requeue(self, job_id: int, *, hold: bool = False) -> None:
        verb = "requeuehold" if hold else "requeue"
        self._run(["scontrol", verb, _job(job_id)], job_id=job_id)

    def drain_node(self, node: str, reason: str) -> None:
        if not reason.strip():
            raise ValueError("a drain needs a reason")
        self._run(
            ["scontrol", "update", f"NodeName={_node(node)}", "State=DRAIN", f"Reason={reason}"]
        )

    # -- the one place commands run -------------------------------------------

    def _run(
        self,
        argv: Sequence[str],
        *,
        job_id: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> proc.Completed:
        """Run a Slurm client command; return what it printed.

        Transient failures are retried up to max_attempts in all, then raised
        as SlurmUnavailable; an unknown job becomes JobNotFound and any other
        refusal SlurmRejected.
        """
        full_env = {**os.environ, **env} if env else None
        failures = 0
        while True:
            try:
                return self._run_command(argv, timeout=self._timeout, env=full_env)
            except CommandTimeout as err:
                problem = f"timed out after {err.timeout:g}s"
            except CommandFailed as err:
                detail = _last_line(err.stderr) or _last_line(err.stdout)
                if job_id is not None and _JOB_NOT_FOUND.search(err.stderr):
                    raise JobNotFound(job_id) from err
                if not TRANSIENT_ERRORS.search(err.stderr):
                    raise SlurmRejected(
                        f"{argv[0]} {argv[1] if len(argv) > 1 else ''} refused: "
                        f"{detail or f'exit code {err.returncode}'}",
                        detail=err.stderr,
                    ) from err
                problem = detail
            except ProcError as err:
                # The client tools are missing or cannot start: not transient.
                raise SlurmUnavailable(f"cannot run {argv[0]}: {err}") from err
            failures += 1
            if failures >= self._max_attempts:
                raise SlurmUnavailable(
                    f"Slurm controller not answering: {argv[0]} failed {failures} times "
                    f"in a row ({problem})",
                    attempts=failures,
                )
            log.warning(
                "%s failed (%s), attempt %d of %d; retrying in %gs",
                argv[0],
                problem,
                failures,
                self._max_attempts,
                self._retry_delay,
            )
            self._sleep(self._retry_delay)


def _job(job_id: int) -> str:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
        raise ValueError(f"not a Slurm job id: {job_id!r}")
    return str(job_id)


def _node(node: str) -> str:
    if not _NODE.fullmatch(node):
        raise ValueError(f"not a node name: {node!r}")
    return node


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
