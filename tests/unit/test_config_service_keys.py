"""The service's scheduling, requeue and walltime settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from slurm_ckpt.config import load_settings
from slurm_ckpt.slurm import states

from .config_helpers import (
    assert_env_value_refused,
    assert_file_value_refused,
    assert_settings,
    load_error,
    write_config,
)


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {})
    assert_settings(
        s,
        {
            "service.max_checkpoints_per_store": 2,
            "service.checkpoint_deadline": timedelta(minutes=15),
            "service.store_timeout": timedelta(seconds=30),
            "service.failure_backoff": timedelta(minutes=5),
            "service.failure_backoff_max": timedelta(hours=2),
            "service.give_up_after": 5,
            "service.jitter_fraction": 0.1,
            "service.metrics_port": 0,
            "service.metrics_host": "127.0.0.1",
            "requeue.enabled": True,
            "requeue.causes": frozenset({"FAILED", "OUT_OF_MEMORY", "NODE_FAIL"}),
            "requeue.max_restarts": 3,
            "walltime.chaining": False,
            "walltime.max_chained_runs": 5,
            "walltime.margin": timedelta(minutes=2),
        },
    )


def test_the_default_deadline_outlasts_a_dump_and_its_commit(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {})
    # A 1 GiB image hashes and commits in seconds (docs/benchmarks.md); a minute spare.
    assert s.service.checkpoint_deadline >= s.launcher.dump_timeout + timedelta(minutes=1)


def test_file_values(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [service]
        max_checkpoints_per_store = 8
        checkpoint_deadline = "30m"
        failure_backoff = "1m"
        failure_backoff_max = "1d"
        give_up_after = 1
        jitter_fraction = 0
        metrics_port = 9464
        metrics_host = "0.0.0.0"

        [requeue]
        enabled = false
        causes = ["TIMEOUT", "PREEMPTED"]
        max_restarts = 0

        [walltime]
        chaining = true
        max_chained_runs = 0
        margin = "5m"
        """,
    )
    s = load_settings(path, {})
    assert_settings(
        s,
        {
            "service.max_checkpoints_per_store": 8,
            "service.checkpoint_deadline": timedelta(minutes=30),
            "service.failure_backoff": timedelta(minutes=1),
            "service.failure_backoff_max": timedelta(days=1),
            "service.give_up_after": 1,
            "service.jitter_fraction": 0.0,  # a float, though the file says 0
            "service.metrics_port": 9464,
            "service.metrics_host": "0.0.0.0",
            "requeue.enabled": False,
            "requeue.causes": frozenset({"TIMEOUT", "PREEMPTED"}),
            "requeue.max_restarts": 0,
            "walltime.chaining": True,
            "walltime.max_chained_runs": 0,
            "walltime.margin": timedelta(minutes=5),
        },
    )


def test_empty_causes_list_is_allowed(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, "[requeue]\ncauses = []\n"), {})
    assert s.requeue.causes == frozenset()


def test_env_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[requeue]\ncauses = ['FAILED']\nenabled = true\n")
    env = {
        "SLURM_CKPT_SERVICE_MAX_CHECKPOINTS_PER_STORE": "3",
        "SLURM_CKPT_SERVICE_CHECKPOINT_DEADLINE": "15m",
        "SLURM_CKPT_SERVICE_FAILURE_BACKOFF": "30s",
        "SLURM_CKPT_SERVICE_FAILURE_BACKOFF_MAX": "1h",
        "SLURM_CKPT_SERVICE_GIVE_UP_AFTER": "9",
        "SLURM_CKPT_SERVICE_JITTER_FRACTION": "0.25",
        "SLURM_CKPT_SERVICE_METRICS_PORT": "9100",
        "SLURM_CKPT_SERVICE_METRICS_HOST": "::1",
        "SLURM_CKPT_REQUEUE_ENABLED": "no",
        "SLURM_CKPT_REQUEUE_CAUSES": "NODE_FAIL, TIMEOUT,PREEMPTED",
        "SLURM_CKPT_REQUEUE_MAX_RESTARTS": "7",
        "SLURM_CKPT_WALLTIME_CHAINING": "TRUE",
        "SLURM_CKPT_WALLTIME_MAX_CHAINED_RUNS": "2",
        "SLURM_CKPT_WALLTIME_MARGIN": "90s",
    }
    s = load_settings(path, env)
    assert_settings(
        s,
        {
            "service.max_checkpoints_per_store": 3,
            "service.checkpoint_deadline": timedelta(minutes=15),
            "service.failure_backoff": timedelta(seconds=30),
            "service.failure_backoff_max": timedelta(hours=1),
            "service.give_up_after": 9,
            "service.jitter_fraction": 0.25,
            "service.metrics_port": 9100,
            "service.metrics_host": "::1",
            "requeue.enabled": False,
            "requeue.causes": frozenset({"NODE_FAIL", "TIMEOUT", "PREEMPTED"}),
            "requeue.max_restarts": 7,
            "walltime.chaining": True,
            "walltime.max_chained_runs": 2,
            "walltime.margin": timedelta(seconds=90),
        },
    )


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("1", True), ("on", True), ("Yes", True), ("false", False), ("0", False)],
)
def test_env_booleans(tmp_path: Path, word: str, value: bool) -> None:
    s = load_settings(write_config(tmp_path, ""), {"SLURM_CKPT_WALLTIME_CHAINING": word})
    assert s.walltime.chaining is value


def test_empty_env_causes_means_none(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {"SLURM_CKPT_REQUEUE_CAUSES": ""})
    assert s.requeue.causes == frozenset()


def test_requeue_causes_are_finished_states_but_never_a_cancel_or_completion() -> None:
    assert states.REQUEUE_CAUSES <= states.FINISHED
    assert "CANCELLED" not in states.REQUEUE_CAUSES
    assert "COMPLETED" not in states.REQUEUE_CAUSES
    assert {"FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "TIMEOUT", "PREEMPTED"} <= states.REQUEUE_CAUSES
    assert states.DEFAULT_REQUEUE_CAUSES <= states.REQUEUE_CAUSES


def test_the_causes_are_those_of_slurm_states(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), {})
    assert s.requeue.causes is states.DEFAULT_REQUEUE_CAUSES
    every = ", ".join(f'"{c}"' for c in sorted(states.REQUEUE_CAUSES))
    s = load_settings(write_config(tmp_path, f"[requeue]\ncauses = [{every}]\n"), {})
    assert s.requeue.causes == states.REQUEUE_CAUSES


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ("[service]\nmax_checkpoints_per_store = 0\n", "max_checkpoints_per_store", ">= 1"),
        ("[service]\ngive_up_after = 0\n", "give_up_after", ">= 1"),
        ('[service]\ncheckpoint_deadline = "0"\n', "checkpoint_deadline", "the total is 0"),
        ("[service]\nfailure_backoff = 300\n", "failure_backoff", 'string like "5m"'),
        ('[service]\nfailure_backoff_max = "soon"\n', "failure_backoff_max", "90s, 30m"),
        ("[service]\njitter_fraction = 1.5\n", "jitter_fraction", "from 0 to 1"),
        ("[service]\njitter_fraction = -0.1\n", "jitter_fraction", "from 0 to 1"),
        ('[service]\njitter_fraction = "0.1"\n', "jitter_fraction", "from 0 to 1"),
        ("[service]\njitter_fraction = true\n", "jitter_fraction", "from 0 to 1"),
        ("[service]\nmetrics_port = -1\n", "metrics_port", "from 0 to 65535"),
        ("[service]\nmetrics_port = 70000\n", "metrics_port", "from 0 to 65535"),
        ('[service]\nmetrics_host = ""\n', "metrics_host", "host name or IP"),
        ('[service]\nmetrics_host = "a b"\n', "metrics_host", "host name or IP"),
        ('[requeue]\nenabled = "yes"\n', "enabled", "true or false"),
        ("[requeue]\nenabled = 1\n", "enabled", "true or false"),
        ('[requeue]\ncauses = "FAILED"\n', "causes", "must be a list of"),
        ('[requeue]\ncauses = ["FAILED", "CANCELLED"]\n', "causes", '"CANCELLED" is not one of'),
        ('[requeue]\ncauses = ["COMPLETED"]\n', "causes", '"COMPLETED" is not one of'),
        ('[requeue]\ncauses = ["failed"]\n', "causes", '"failed" is not one of'),
        ("[requeue]\ncauses = [1]\n", "causes", "1 is not one of"),
        ("[requeue]\nmax_restarts = -1\n", "max_restarts", ">= 0"),
        ("[walltime]\nchaining = 0\n", "chaining", "true or false"),
        ("[walltime]\nmax_chained_runs = -2\n", "max_chained_runs", ">= 0"),
        ('[walltime]\nmargin = "-1m"\n', "margin", "sign"),
    ],
)
def test_invalid_file_value(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    assert_file_value_refused(tmp_path, toml, key, problem)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("SLURM_CKPT_REQUEUE_ENABLED", "maybe", "true or false"),
        ("SLURM_CKPT_REQUEUE_CAUSES", "FAILED,BOGUS", '"BOGUS" is not one of'),
        ("SLURM_CKPT_REQUEUE_CAUSES", "CANCELLED", '"CANCELLED" is not one of'),
        ("SLURM_CKPT_SERVICE_JITTER_FRACTION", "2", "from 0 to 1"),
        ("SLURM_CKPT_SERVICE_JITTER_FRACTION", "-0.5", "from 0 to 1"),
        ("SLURM_CKPT_SERVICE_METRICS_PORT", "99999", "from 0 to 65535"),
        ("SLURM_CKPT_SERVICE_GIVE_UP_AFTER", "0", ">= 1"),
        ("SLURM_CKPT_WALLTIME_MARGIN", "later", "90s, 30m"),
    ],
)
def test_invalid_env_value(tmp_path: Path, name: str, value: str, problem: str) -> None:
    assert_env_value_refused(tmp_path, name, value, problem)


def test_unknown_key_in_the_new_sections(tmp_path: Path) -> None:
    err = load_error(write_config(tmp_path, "[walltime]\nchain = true\n"))
    assert "unknown key walltime.chain" in str(err)
    assert "chaining" in str(err)
    err = load_error(write_config(tmp_path, "[requeue]\ncause = []\n"))
    assert "unknown key requeue.cause" in str(err)


def test_backoff_maximum_below_the_backoff(tmp_path: Path) -> None:
    err = load_error(write_config(tmp_path, '[service]\nfailure_backoff = "3h"\n'))
    assert "failure_backoff_max (7200s) is shorter than service.failure_backoff (10800s)" in str(
        err
    )
    assert err.key == "service.failure_backoff_max"
    # Equal is fine: every retry then waits the same.
    s = load_settings(write_config(tmp_path, '[service]\nfailure_backoff = "2h"\n'), {})
    assert s.service.failure_backoff == s.service.failure_backoff_max
