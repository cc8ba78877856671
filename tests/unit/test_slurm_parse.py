"""Pure parsers of Slurm output, on output recorded from the test cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from slurm_ckpt.errors import SlurmOutputError
from slurm_ckpt.slurm import parse, releases, states

RECORDED = Path(__file__).resolve().parent.parent / "data" / "slurm"
DATA = RECORDED / "22.05"
# Every release's recording (scripts/record-slurm-output.sh), one folder each.
RELEASES = sorted(p.name for p in RECORDED.iterdir() if p.is_dir())


def test_squeue_keeps_only_tagged_jobs_with_every_field() -> None:
    jobs = {job.job_id: job for job in parse.parse_squeue((DATA / "squeue_jobs.txt").read_text())}

    assert sorted(jobs) == [4, 5, 6]
    running = jobs[6]
    assert running.state == "RUNNING" and running.is_running and not running.is_finished
    assert (running.user, running.uid) == ("ckpt-bob", 2902)
    assert running.batch_host == "node1" and running.node_list == "node1"
    assert running.start_time == datetime.fromtimestamp(1795722497, UTC)
    assert running.end_time == datetime.fromtimestamp(1795808897, UTC)
    assert running.time_limit == 86400
    assert running.restarts == 0
    assert running.interval == 1800

    pending = jobs[5]
    assert pending.state in states.PENDING
    assert pending.batch_host is None and pending.node_list == ""
    assert pending.start_time is None and pending.end_time is None
    assert pending.time_limit == 90 * 60
    assert pending.interval == 600  # the tag after an admin's own note

    assert jobs[4].is_finished and jobs[4].interval == 5400
    assert jobs[4].time_limit == 365 * 86400


def test_a_recording_exists_for_each_tested_release() -> None:
    assert set(releases.TESTED) <= set(RELEASES)


@pytest.mark.parametrize("release", RELEASES)
def test_each_releases_squeue_output_gives_the_tagged_jobs(release: str) -> None:
    jobs = parse.parse_squeue((RECORDED / release / "squeue_jobs.txt").read_text())

    by_interval = {job.interval: job for job in jobs}
    assert len(jobs) == 3 and set(by_interval) == {5400, 600, 1800}  # the untagged one is left out
    finished, held, running = by_interval[5400], by_interval[600], by_interval[1800]
    assert finished.is_finished and finished.time_limit == 365 * 86400
    assert held.state in states.PENDING and held.start_time is None and held.batch_host is None
    assert held.time_limit == 90 * 60 and held.user == "ckpt-alice"
    assert running.is_running and running.user == "ckpt-bob" and running.time_limit == 86400
    assert running.batch_host in {"node1", "node2"} and running.node_list == running.batch_host
    assert running.start_time is not None and running.end_time is not None
    assert running.end_time - running.start_time == timedelta(days=1)
    assert running.restarts == 0


@pytest.mark.parametrize("release", RELEASES)
def test_each_releases_sinfo_output_gives_node_states_and_reasons(release: str) -> None:
    def node2(name: str) -> Any:
        return parse.parse_sinfo((RECORDED / release / name).read_text())["node2"]

    assert node2("sinfo_idle.txt").is_usable
    drained = node2("sinfo_drained.txt")
    assert drained.state == "drained" and drained.reason == "slurm-ckpt test | pipe"
    down = node2("sinfo_down.txt")
    assert down.state == "down" and down.reason == "recorded for slurm-ckpt parser tests"


def test_squeue_reads_slurms_default_time_format_in_a_given_zone() -> None:
    line = (
        "7|RUNNING|ckpt-alice|2901|node2|node2|2026-11-26T19:48:17|30:00|"
        "2026-11-26T20:18:17|2|slurm-ckpt:interval=60|\n"
    )
    (job,) = parse.parse_squeue(line, local_tz=timezone(timedelta(hours=1)))
    assert job.start_time == datetime(2026, 11, 26, 18, 48, 17, tzinfo=UTC)
    assert job.time_limit == 1800
    assert job.restarts == 2


def test_a_pipe_in_the_admin_comment_does_not_shift_fields() -> None:
    line = "8|PENDING|u|1|n/a||N/A|UNLIMITED|N/A|0|a|b slurm-ckpt:interval=90|\n"
    (job,) = parse.parse_squeue(line)
    assert job.interval == 90 and job.time_limit is None


@pytest.mark.parametrize(
    "line",
    [
        "1|RUNNING|u|1|n1|n1|0|UNLIMITED|0|0|slurm-ckpt:interval=60",  # no final "|"
        "1|RUNNING|u|1|slurm-ckpt:interval=60|",  # too few fields
        "x|RUNNING|u|1|n1|n1|0|UNLIMITED|0|0|slurm-ckpt:interval=60|",
        "1|RUNNING|u|1|n1|n1|yesterday|UNLIMITED|0|0|slurm-ckpt:interval=60|",
        "1|RUNNING|u|1|n1|n1|0|forever|0|0|slurm-ckpt:interval=60|",
    ],
)
def test_malformed_squeue_lines_raise(line: str) -> None:
    with pytest.raises(SlurmOutputError):
        parse.parse_squeue(line)


@pytest.mark.parametrize(
    ("comment", "seconds"),
    [
        ("slurm-ckpt:interval=1800", 1800),
        ("note slurm-ckpt:interval=60", 60),
        ("slurm-ckpt:interval=60 note", 60),
        ("slurm-ckpt:interval=0", None),
        ("slurm-ckpt:interval=", None),
        ("slurm-ckpt:interval=12x", None),
        ("xslurm-ckpt:interval=60", None),
        ("(null)", None),
        ("", None),
        (None, None),
    ],
)
def test_tag(comment: str | None, seconds: int | None) -> None:
    assert parse.parse_tag(comment) == seconds


def test_tag_round_trip() -> None:
    assert parse.parse_tag(parse.format_tag(5400)) == 5400


@pytest.mark.parametrize(
    ("comment", "no_chain"),
    [
        ("slurm-ckpt:interval=1800 slurm-ckpt:no-chain", True),
        ("note slurm-ckpt:no-chain slurm-ckpt:interval=60", True),
        ("slurm-ckpt:interval=1800", False),
        ("slurm-ckpt:interval=60 slurm-ckpt:no-chainx", False),
        ("xslurm-ckpt:no-chain slurm-ckpt:interval=60", False),
        ("", False),
        (None, False),
    ],
)
def test_no_chain_tag(comment: str | None, no_chain: bool) -> None:
    assert parse.parse_no_chain(comment) is no_chain


def test_squeue_reads_the_opt_out_of_walltime_chaining() -> None:
    line = "9|RUNNING|u|1|n1|n1|0|UNLIMITED|0|0|slurm-ckpt:interval=60 slurm-ckpt:no-chain|\n"
    (job,) = parse.parse_squeue(line)
    assert job.no_chain and job.interval == 60
    (plain,) = parse.parse_squeue(line.replace(" slurm-ckpt:no-chain", ""))
    assert not plain.no_chain


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("UNLIMITED", None),
        ("INFINITE", None),
        ("NOT_SET", None),
        ("30", 1800),
        ("05:00", 300),
        ("1:30:00", 5400),
        ("1-00:00:00", 86400),
        ("365-00:00:00", 365 * 86400),
    ],
)
def test_time_limit(text: str, seconds: int | None) -> None:
    assert parse.parse_time_limit(text) == seconds


def test_sinfo_states_recorded_up_drained_and_down() -> None:
    idle = parse.parse_sinfo((DATA / "sinfo_idle.txt").read_text())
    assert set(idle) == {"node1", "node2"}
    assert idle["node2"].state == "idle" and idle["node2"].is_usable
    assert idle["node1"].state == "mixed" and idle["node1"].reason is None

    drained = parse.parse_sinfo((DATA / "sinfo_drained.txt").read_text())["node2"]
    assert drained.state == "drained" and not drained.is_usable
    assert drained.reason == "slurm-ckpt test | pipe"

    down = parse.parse_sinfo((DATA / "sinfo_down.txt").read_text())["node2"]
    assert down.state == "down" and not down.is_usable
    assert down.reason == "recorded for slurm-ckpt parser tests"


def test_sinfo_not_responding_flag_and_duplicate_partitions() -> None:
    nodes = parse.parse_sinfo("node2|idle*|none\nnode2|idle*|none\nnode1|down*|Not responding\n")
    assert nodes["node2"].state == "idle" and not nodes["node2"].responding
    assert not nodes["node2"].is_usable
    assert nodes["node1"].state == "down" and not nodes["node1"].responding
    assert nodes["node1"].reason == "Not responding"


@pytest.mark.parametrize("text", ["node1\n", "|idle|none\n", "node1||none\n"])
def test_malformed_sinfo_lines_raise(text: str) -> None:
    with pytest.raises(SlurmOutputError):
        parse.parse_sinfo(text)


def test_state_sets_are_disjoint() -> None:
    job_sets = [states.RUNNING, states.PENDING, states.TRANSITIONAL, states.FINISHED]
    assert sum(len(s) for s in job_sets) == len(states.JOB_STATES)
    assert states.INTERRUPTED <= states.FINISHED
    node_sets = [states.NODE_UP, states.NODE_DRAINING, states.NODE_DOWN]
    assert sum(len(s) for s in node_sets) == len(states.NODE_STATES)
