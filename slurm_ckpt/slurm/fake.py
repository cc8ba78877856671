"""A fake Slurm for unit tests of the service's own logic and for bench-service.

It holds jobs in memory and records what was asked of it; it refuses what
Slurm refuses (tests/contract/test_slurm_adapters.py holds it to the same
contract as the real adapters). Not in the registry: nothing outside tests and
benchmarks selects it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from slurm_ckpt.errors import JobNotFound, SlurmRejected
from slurm_ckpt.slurm import states
from slurm_ckpt.slurm.base import JobInfo, NodeInfo


def _two_idle_nodes() -> dict[str, NodeInfo]:
    # As the local test cluster has.
    return {name: NodeInfo(name, "idle", True, None) for name in ("node1", "node2")}


@dataclass
class FakeSlurm:
    name: str = "fake"
    jobs: dict[int, JobInfo] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=_two_idle_nodes)
    signals: list[tuple[int, str]] = field(default_factory=list)
    requeues: list[int] = field(default_factory=list)
    queries: int = 0
    # Called on signal_batch, e.g. to play the launcher's part.
    on_signal: Callable[[int, str], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job: JobInfo) -> None:
        with self._lock:
            self.jobs[job.job_id] = job

    def set(self, job_id: int, **changes: object) -> None:
        with self._lock:
            self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], **changes)  # type: ignore[arg-type]

    def list_checkpointed_jobs(self) -> list[JobInfo]:
        with self._lock:
            self.queries += 1
            return list(self.jobs.values())

    def _get(self, job_id: int) -> JobInfo:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    def signal_batch(self, job_id: int, signal: str = "USR1") -> None:
        with self._lock:
            if not self._get(job_id).is_running:
                raise SlurmRejected(f"job {job_id} is not running")
            self.signals.append((job_id, signal))
        if self.on_signal is not None:
            self.on_signal(job_id, signal)

    def requeue(self, job_id: int, *, hold: bool = False) -> None:
        with self._lock:
            job = self._get(job_id)
            if job.state in states.PENDING:
                raise SlurmRejected(f"Job is pending execution for job {job_id}")
            self.requeues.append(job_id)
            self.jobs[job_id] = dataclasses.replace(
                job,
                state="REQUEUE_HOLD" if hold else "PENDING",
                restarts=job.restarts + 1,
                batch_host=None,
                node_list="",
            )

    def node_states(self) -> dict[str, NodeInfo]:
        with self._lock:
            return dict(self.nodes)

    def drain_node(self, node: str, reason: str) -> None:
        with self._lock:
            if node not in self.nodes:
                raise SlurmRejected(f"Invalid node name specified: {node}")
            busy = any(j.is_running and j.batch_host == node for j in self.jobs.values())
            self.nodes[node] = NodeInfo(node, "draining" if busy else "drained", True, reason)
