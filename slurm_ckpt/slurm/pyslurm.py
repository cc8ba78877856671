"""The Slurm adapter over pyslurm (in process, for sites whose Slurm matches a
pyslurm release; PyPI has pyslurm 25.11 only, which does not build against
Debian's Slurm 22.05, so this thin layer is exercised by the contract tests
only where pyslurm imports).

Importing this module imports pyslurm; `registry` does that lazily and lists
the adapter as unavailable, with the reason, when the import fails.
"""

from __future__ import annotations

from typing import Any

import pyslurm as _pyslurm

from slurm_ckpt.errors import JobNotFound, SlurmRejected, SlurmUnavailable
from slurm_ckpt.slurm import parse
from slurm_ckpt.slurm.base import JobInfo, NodeInfo

# ESLURM_INVALID_JOB_ID in slurm_errno.h
_INVALID_JOB_ID = 2017
# SLURM_COMMUNICATIONS_* and socket errors: the controller did not answer.
_TRANSIENT = range(1000, 1100)


class PySlurm:
    """SlurmAdapter over pyslurm's Job/Jobs/Node/Nodes API (pyslurm >= 23.2)."""

    name = "pyslurm"

    def list_checkpointed_jobs(self) -> list[JobInfo]:
        jobs = _call(None, lambda: _pyslurm.Jobs.load())
        found: list[JobInfo] = []
        for job in jobs.values():
            interval = parse.parse_tag(getattr(job, "admin_comment", None))
            if interval is None:
                continue
            found.append(
                JobInfo(
                    job_id=int(job.id),
                    state=str(job.state),
                    user=str(job.user_name),
                    uid=int(job.user_id),
                    batch_host=job.batch_host or None,
                    node_list=job.nodes or "",
                    start_time=_time(job.start_time),
                    time_limit=None if job.time_limit is None else int(job.time_limit) * 60,
                    end_time=_time(job.end_time),
                    restarts=int(getattr(job, "requeue_count", 0) or 0),
                    interval=interval,
                    no_chain=parse.parse_no_chain(getattr(job, "admin_comment", None)),
                )
            )
        return found

    def signal_batch(self, job_id: int, signal: str = "USR1") -> None:
        _call(job_id, lambda: _pyslurm.Job(job_id).send_signal(signal, steps="batch"))

    def requeue(self, job_id: int, *, hold: bool = False) -> None:
        _call(job_id, lambda: _pyslurm.Job(job_id).requeue(hold=hold))

    def node_states(self) -> dict[str, NodeInfo]:
        nodes = _call(None, lambda: _pyslurm.Nodes.load())
        result: dict[str, NodeInfo] = {}
        for name, node in nodes.items():
            raw = str(node.state).lower()
            result[name] = NodeInfo(
                name=name,
                state=raw.split("+")[0].rstrip("*~#!%$@^-"),
                responding="not_responding" not in raw and "*" not in raw,
                reason=node.reason or None,
            )
        return result

    def drain_node(self, node: str, reason: str) -> None:
        change = _pyslurm.Node(state="DRAIN", reason=reason)
        _call(None, lambda: _pyslurm.Node(node).modify(change))


def _call(job_id: int | None, action: Any) -> Any:
    """Run a pyslurm call, translating its RPCError into our typed errors."""
    try:
        return action()
    except _pyslurm.RPCError as err:
        code = getattr(err, "errno", None)
        if job_id is not None and code == _INVALID_JOB_ID:
            raise JobNotFound(job_id) from err
        if code in _TRANSIENT:
            raise SlurmUnavailable(f"Slurm controller not answering: {err}") from err
        raise SlurmRejected(f"Slurm refused the request: {err}", detail=str(err)) from err


def _time(value: Any) -> Any:
    if not value:
        return None
    return parse.parse_time(str(int(value)))
