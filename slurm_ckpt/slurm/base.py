"""The Slurm adapter: one Protocol, the records it returns.

Everything slurm-ckpt asks of Slurm goes through `SlurmAdapter`; the service
and `ckpt-admin` depend on this module, never on one implementation
(`cli.CliSlurm`, `pyslurm.PySlurm`; `registry` picks one by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from slurm_ckpt.slurm import states


@dataclass(frozen=True)
class JobInfo:
    """One checkpointed job as Slurm sees it at one poll."""

    job_id: int
    state: str  # a long state name, see states.JOB_STATES
    user: str
    uid: int
    batch_host: str | None  # the node running the batch process; None until it starts
    node_list: str  # Slurm hostlist expression ("node[1-2]"); "" while pending
    start_time: datetime | None  # UTC; actual or expected start, None when unknown
    time_limit: int | None  # seconds; None for no limit
    end_time: datetime | None  # UTC; actual or expected end, None when unknown
    restarts: int  # how often Slurm requeued the job
    interval: int  # checkpoint interval in seconds, from the admin_comment tag
    no_chain: bool = False  # the user opted out of walltime chaining (--checkpoint-no-chain)

    @property
    def is_running(self) -> bool:
        return self.state in states.RUNNING

    @property
    def limit_at(self) -> datetime | None:
        """When this run reaches its time limit; None without a limit or a start. Not
        `end_time`: Slurm moves that to the end of a preemption's grace time, too."""
        if self.start_time is None or self.time_limit is None:
            return None
        return self.start_time + timedelta(seconds=self.time_limit)

    @property
    def is_finished(self) -> bool:
        return self.state in states.FINISHED


@dataclass(frozen=True)
class NodeInfo:
    """One node's state."""

    name: str
    state: str  # lower case, flags removed: "idle", "mixed", "down", "drained", ...
    responding: bool  # False when Slurm marks the node not responding ("*")
    reason: str | None  # the admin's or Slurm's reason, if any

    @property
    def is_usable(self) -> bool:
        return self.state in states.NODE_UP and self.responding


class SlurmAdapter(Protocol):
    """What slurm-ckpt needs from Slurm.

    Every method may also raise SlurmUnavailable when the controller does not
    answer after the configured retries.
    """

    name: str

    def list_checkpointed_jobs(self) -> list[JobInfo]:
        """Every job carrying the slurm-ckpt tag that Slurm still knows, in ONE query.

        Raises SlurmUnavailable, SlurmOutputError.
        """
        ...

    def signal_batch(self, job_id: int, signal: str = "USR1") -> None:
        """Send `signal` (a name like "USR1") to the job's batch process only.

        Raises JobNotFound, SlurmRejected (not running, not allowed), SlurmUnavailable.
        """
        ...

    def requeue(self, job_id: int, *, hold: bool = False) -> None:
        """Requeue the job (its batch process is killed), held when `hold`.

        Raises JobNotFound, SlurmRejected (a pending job, not allowed), SlurmUnavailable.
        """
        ...

    def node_states(self) -> dict[str, NodeInfo]:
        """Every node's state, by node name.

        Raises SlurmUnavailable, SlurmOutputError.
        """
        ...

    def drain_node(self, node: str, reason: str) -> None:
        """Take no new jobs on `node`; running jobs go on.

        Raises SlurmRejected (unknown node, not allowed), SlurmUnavailable.
        """
        ...
