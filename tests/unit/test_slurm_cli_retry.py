"""CliSlurm's error translation and bounded retries, with a scripted command runner."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.errors import (
    CommandFailed,
    CommandNotFound,
    CommandTimeout,
    JobNotFound,
    SlurmBackendUnavailable,
    SlurmRejected,
    SlurmUnavailable,
)
from slurm_ckpt.proc import Completed
from slurm_ckpt.slurm import registry
from slurm_ckpt.slurm.cli import CliSlurm

DOWN = "squeue: error: Unable to contact slurm controller (connect failure)"
TAGGED = (
    "6|RUNNING|ckpt-bob|2902|node1|node1|1795722497|1-00:00:00|1795808897|0|"
    "slurm-ckpt:interval=1800|\n"
)


class Script:
    """A runner replaying outcomes in order, recording each call."""

    def __init__(self, *outcomes: str | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def __call__(self, argv: Sequence[str], **kwargs: Any) -> Completed:
        self.calls.append((tuple(argv), kwargs))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return Completed(tuple(argv), 0, outcome, "", 0.01)


def failed(stderr: str, rc: int = 1) -> CommandFailed:
    return CommandFailed(("x",), rc, "", stderr)


def adapter(runner: Script, attempts: int = 3) -> tuple[CliSlurm, list[float]]:
    sleeps: list[float] = []
    cli = CliSlurm(max_attempts=attempts, retry_delay=1.5, runner=runner, sleep=sleeps.append)
    return cli, sleeps


def test_one_squeue_call_with_explicit_format_and_epoch_times() -> None:
    runner = Script(TAGGED)
    cli, _ = adapter(runner)
    (job,) = cli.list_checkpointed_jobs()
    assert job.job_id == 6
    ((argv, kwargs),) = runner.calls
    assert argv[0] == "squeue" and "--noheader" in argv and "--states=all" in argv
    assert any(a.startswith("--Format=JobID:|,") for a in argv)
    assert kwargs["env"]["SLURM_TIME_FORMAT"] == "%s"
    assert kwargs["timeout"] == 30.0


def test_transient_errors_are_retried_then_succeed(caplog: pytest.LogCaptureFixture) -> None:
    runner = Script(failed(DOWN), CommandTimeout(("squeue",), 30, "", ""), TAGGED)
    cli, sleeps = adapter(runner)
    with caplog.at_level(logging.WARNING):
        assert len(cli.list_checkpointed_jobs()) == 1
    assert sleeps == [1.5, 1.5]
    assert len(caplog.records) == 2 and "attempt 1 of 3" in caplog.records[0].getMessage()


def test_consecutive_transient_failures_are_bounded_then_reported() -> None:
    runner = Script(*[failed(DOWN)] * 3)
    cli, sleeps = adapter(runner)
    with pytest.raises(SlurmUnavailable) as err:
        cli.node_states()
    assert err.value.attempts == 3
    assert "3 times in a row" in str(err.value)
    assert len(runner.calls) == 3 and len(sleeps) == 2


@pytest.mark.parametrize(
    "stderr",
    [
        "slurm_load_jobs error: Invalid job id specified",
        "squeue: error: Invalid job id: 9",  # an id no job can have
    ],
)
def test_unknown_job_is_not_retried(stderr: str) -> None:
    runner = Script(failed(stderr))
    cli, sleeps = adapter(runner)
    with pytest.raises(JobNotFound) as err:
        cli.signal_batch(9)
    assert err.value.job_id == 9 and sleeps == []
    assert runner.calls[0][0] == ("squeue", "--noheader", "--jobs=9", "--format=%T")


def test_only_a_running_job_is_signalled() -> None:
    runner = Script("RUNNING\n", "")
    cli, _ = adapter(runner)
    cli.signal_batch(5, "USR1")
    assert runner.calls[1][0] == ("scancel", "--signal=USR1", "--batch", "5")

    pending = Script("PENDING\n")
    cli, sleeps = adapter(pending)
    with pytest.raises(SlurmRejected, match="job 6 is PENDING, not running"):
        cli.signal_batch(6, "USR1")
    assert len(pending.calls) == 1 and sleeps == []  # never handed to scancel


def test_a_refusal_is_typed_and_not_retried() -> None:
    runner = Script(failed("Access/permission denied for job 4"))
    cli, sleeps = adapter(runner)
    with pytest.raises(SlurmRejected, match="permission denied"):
        cli.requeue(4, hold=True)
    assert runner.calls[0][0] == ("scontrol", "requeuehold", "4") and sleeps == []


def test_missing_tools_are_reported_at_once() -> None:
    cli, sleeps = adapter(Script(CommandNotFound(("squeue",))))
    with pytest.raises(SlurmUnavailable):
        cli.list_checkpointed_jobs()
    assert sleeps == []


@pytest.mark.parametrize("job_id", [0, -1, True])
def test_bad_job_ids_are_refused_before_slurm_is_asked(job_id: int) -> None:
    runner = Script()
    cli, _ = adapter(runner)
    with pytest.raises(ValueError):
        cli.requeue(job_id)
    assert runner.calls == []


def test_node_names_and_signals_are_checked() -> None:
    cli, _ = adapter(Script())
    with pytest.raises(ValueError):
        cli.drain_node("node1 State=DOWN", "x")
    with pytest.raises(ValueError):
        cli.signal_batch(1, "USR1; rm")


def test_registry_lists_every_backend_and_builds_the_cli_one() -> None:
    assert set(registry.BACKENDS) == {"cli", "pyslurm"}
    assert "cli" in registry.available()
    for name, reason in registry.unavailable().items():
        assert name in registry.BACKENDS and reason
    settings = load_settings(env={"SLURM_CKPT_SLURM_MAX_ATTEMPTS": "5"}, path=None)
    assert settings.slurm.max_attempts == 5
    assert registry.create("cli", settings.slurm).name == "cli"
    with pytest.raises(SlurmBackendUnavailable, match="unknown adapter"):
        registry.create("rest", settings.slurm)
