"""Pure parsers of Slurm command output, and the admin_comment tag. No I/O.

The formats requested from the tools live here next to their parsers, so a
parser and its format always change together. Fields are separated by "|"
with the free-text field last, so a "|" inside it cannot shift the others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

from slurm_ckpt.errors import SlurmOutputError
from slurm_ckpt.slurm.base import JobInfo, NodeInfo

# Written by plugins/job_submit.lua into admin_comment: "slurm-ckpt:interval=<seconds>",
# followed by "slurm-ckpt:no-chain" for a job submitted with --checkpoint-no-chain.
TAG_PREFIX = "slurm-ckpt:interval="
NO_CHAIN_TAG = "slurm-ckpt:no-chain"
_TAG = re.compile(r"(?:^|\s)slurm-ckpt:interval=([0-9]{1,9})(?=\s|$)")
_NO_CHAIN = re.compile(rf"(?:^|\s){re.escape(NO_CHAIN_TAG)}(?=\s|$)")

# squeue --Format fields; "Field:|" prints the field unpadded, followed by "|".
JOB_FIELDS = (
    "JobID",
    "State",
    "UserName",
    "UserID",
    "BatchHost",
    "NodeList",
    "StartTime",
    "TimeLimit",
    "EndTime",
    "RestartCnt",
    "admin_comment",  # free text: last
)
SQUEUE_FORMAT = ",".join(f"{field}:|" for field in JOB_FIELDS)
# Makes squeue print times as seconds since the epoch: no time zone guessing.
TIME_FORMAT_ENV = {"SLURM_TIME_FORMAT": "%s"}

# sinfo --format: node name, long state, reason (free text: last).
SINFO_FORMAT = "%N|%T|%E"

_EMPTY = frozenset({"", "N/A", "n/a", "(null)", "None", "Unknown", "NONE"})
# sinfo's %E for a node without a reason.
_NO_REASON = frozenset({"", "none", "(null)", "N/A"})
_UNLIMITED = frozenset({"UNLIMITED", "INFINITE", "NOT_SET", "N/A", "(null)"})
_SLURM_TIME = re.compile(r"(?:([0-9]+)-)?(?:([0-9]+):)?([0-9]+):([0-9]+)|([0-9]+)")
# Flags sinfo appends to a node state: not responding, powered down, powering up, ...
_NODE_FLAGS = "*~#!%$@^-+"


def format_tag(seconds: int) -> str:
    """The admin_comment tag for a checkpoint interval of `seconds`."""
    return f"{TAG_PREFIX}{seconds}"


def parse_tag(admin_comment: str | None) -> int | None:
    """The interval in seconds from the tag in `admin_comment`, or None without a valid tag."""
    if not admin_comment:
        return None
    match = _TAG.search(admin_comment)
    if match is None:
        return None
    seconds = int(match.group(1))
    return seconds if seconds > 0 else None


def parse_no_chain(admin_comment: str | None) -> bool:
    """Whether `admin_comment` says the user opted out of walltime chaining."""
    return admin_comment is not None and _NO_CHAIN.search(admin_comment) is not None


def parse_time(value: str, local_tz: tzinfo | None = None) -> datetime | None:
    """A Slurm timestamp as an aware UTC datetime; None for N/A, Unknown, ...

    Takes epoch seconds (SLURM_TIME_FORMAT=%s) or Slurm's default
    YYYY-MM-DDTHH:MM:SS, read in `local_tz` (None: this machine's zone).
    Raises SlurmOutputError for anything else.
    """
    value = value.strip()
    if value in _EMPTY:
        return None
    if value.isdigit():
        if int(value) == 0:
            return None
        return datetime.fromtimestamp(int(value), UTC)
    try:
        naive = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise SlurmOutputError(f"unexpected Slurm time {value!r}", line=value) from None
    local = naive.replace(tzinfo=local_tz) if local_tz else naive.astimezone()
    return local.astimezone(UTC)


def parse_time_limit(value: str) -> int | None:
    """A Slurm time limit in seconds; None for no limit.

    Slurm prints [D-][HH:]MM:SS, or a bare number of minutes on input.
    Raises SlurmOutputError for anything else.
    """
    value = value.strip()
    if value in _UNLIMITED:
        return None
    match = _SLURM_TIME.fullmatch(value)
    if match is None:
        raise SlurmOutputError(f"unexpected Slurm time limit {value!r}", line=value)
    days, hours, minutes, seconds, bare = match.groups()
    if bare is not None:
        return int(bare) * 60
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)


def parse_squeue(text: str, local_tz: tzinfo | None = None) -> list[JobInfo]:
    """The tagged jobs in squeue output printed with SQUEUE_FORMAT and --noheader.

    Jobs without a valid slurm-ckpt tag are left out. Raises SlurmOutputError
    for a line that does not have the expected fields.
    """
    jobs: list[JobInfo] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = _split(line, len(JOB_FIELDS))
        interval = parse_tag(fields[-1])
        if interval is None:
            continue
        jobs.append(_job(fields, line, local_tz, interval))
    return jobs


def _job(fields: Sequence[str], line: str, local_tz: tzinfo | None, interval: int) -> JobInfo:
    job_id, state, user, uid, batch_host, node_list, start, limit, end, restarts = fields[:10]
    try:
        return JobInfo(
            job_id=int(job_id),
            state=state.strip().split()[0] if state.strip() else "",
            user=user.strip(),
            uid=int(uid),
            batch_host=None if batch_host.strip() in _EMPTY else batch_host.strip(),
            node_list="" if node_list.strip() in _EMPTY else node_list.strip(),
            start_time=parse_time(start, local_tz),
            time_limit=parse_time_limit(limit),
            end_time=parse_time(end, local_tz),
            restarts=int(restarts),
            interval=interval,
            no_chain=parse_no_chain(fields[-1]),
        )
    except ValueError:
        raise SlurmOutputError(f"unexpected squeue line {line!r}", line=line) from None


def parse_sinfo(text: str) -> dict[str, NodeInfo]:
    """Nodes from `sinfo --Node --noheader --format=SINFO_FORMAT` output.

    sinfo prints a node once per partition; the first line wins. Raises
    SlurmOutputError for a malformed line.
    """
    nodes: dict[str, NodeInfo] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, raw_state, reason = _split(line, 3, trailing=False)
        name = name.strip()
        raw_state = raw_state.strip().lower()
        state = raw_state.rstrip(_NODE_FLAGS)
        if not name or not state:
            raise SlurmOutputError(f"unexpected sinfo line {line!r}", line=line)
        nodes.setdefault(
            name,
            NodeInfo(
                name=name,
                state=state,
                responding="*" not in raw_state[len(state) :],
                reason=None if reason.strip() in _NO_REASON else reason.strip(),
            ),
        )
    return nodes


def _split(line: str, count: int, *, trailing: bool = True) -> list[str]:
    """Split `line` into `count` "|"-separated fields, the last one taking any extra "|"."""
    body = line.rstrip("\n")
    if trailing:
        # squeue --Format "Field:|" ends every field, the last one too, with "|".
        if not body.endswith("|"):
            raise SlurmOutputError(f"unexpected Slurm output line {line!r}", line=line)
        body = body[:-1]
    fields = body.split("|", count - 1)
    if len(fields) != count:
        raise SlurmOutputError(f"expected {count} fields, got {len(fields)}: {line!r}", line=line)
    return fields
