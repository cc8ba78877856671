"""The world around a Slurm adapter under contract test: what a test does to Slurm, and
sees of it, other than through the adapter. On the cluster that is sbatch, Slurm's
own scheduler, the batch script and an admin's scontrol; for the fake Slurm the
world plays all of them on the fake's state, as Slurm would."""

from __future__ import annotations

import dataclasses
import os
import pwd
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from slurm_ckpt.slurm import states
from slurm_ckpt.slurm.base import JobInfo
from slurm_ckpt.slurm.fake import FakeSlurm
from tests.integration.slurm_helpers import SlurmTestClient

T = TypeVar("T")

SLEEP = "#!/bin/bash\nsleep 300\n"
# Records who got USR1: the batch process exits at once, its child never does.
SIGNAL_RECORDER = (
    "#!/bin/bash\n"
    "bash -c 'trap \"echo child >> signals.txt\" USR1; while :; do sleep 0.2; done' &\n"
    "child=$!\n"
    "trap 'echo batch >> signals.txt; kill $child; exit 0' USR1\n"
    "touch ready\n"
    "while :; do sleep 0.2; done\n"
)


class SlurmWorld(Protocol):
    user: str
    uid: int
    nodes: tuple[str, ...]  # every node of the cluster
    patience: float  # seconds a change may take to show

    def submit(
        self,
        *,
        checkpoint: int | None = 120,
        no_chain: bool = False,
        time_limit: int | None = None,
        held: bool = False,
        node: str | None = None,
    ) -> int:
        """A new batch job that sleeps: `checkpoint` seconds as its --checkpoint
        (None: a job without the option), `time_limit` in minutes."""
        ...

    def submit_signal_recorder(self) -> int:
        """A running job whose batch process, and a child of it, record the signals
        they get; the batch process exits on USR1."""
        ...

    def signals_recorded(self, job_id: int) -> list[str]:
        """Which of the recorder's processes got USR1 ("batch", "child"), once its
        batch process exited."""
        ...

    def wait_running(self, job_id: int) -> None: ...

    def is_held(self, job_id: int) -> bool: ...

    def release(self, job_id: int) -> None: ...

    def cancel(self, job_id: int) -> None: ...

    def resume_node(self, node: str) -> None: ...

    def close(self) -> None:
        """Cancel every job this world submitted."""
        ...


class ClusterWorld:
    """The local test cluster, jobs submitted as a test user."""

    nodes: tuple[str, ...] = ("node1", "node2")
    patience = 90.0

    def __init__(self, cluster: SlurmTestClient, user: pwd.struct_passwd, workdir: Path) -> None:
        self.cluster = cluster
        self.user = user.pw_name
        self.uid = user.pw_uid
        self.workdir = workdir
        self.submitted: list[int] = []

    def _submit(self, script: str, args: list[str]) -> int:
        job_id = self.cluster.submit(script, user=self.user, cwd=self.workdir, args=args)
        self.submitted.append(job_id)
        return job_id

    def submit(
        self,
        *,
        checkpoint: int | None = 120,
        no_chain: bool = False,
        time_limit: int | None = None,
        held: bool = False,
        node: str | None = None,
    ) -> int:
        args = ["--output=/dev/null", "--requeue"]
        if checkpoint is not None:
            args.append(f"--checkpoint={checkpoint}s")
        if no_chain:
            args.append("--checkpoint-no-chain")
        if time_limit is not None:
            args.append(f"--time={time_limit}")
        if held:
            args.append("--hold")
        if node is not None:
            args.append(f"--nodelist={node}")
        return self._submit(SLEEP, args)

    def submit_signal_recorder(self) -> int:
        # Without --checkpoint: the launcher of a checkpointed job takes USR1 for itself.
        job_id = self._submit(SIGNAL_RECORDER, ["--output=/dev/null"])
        self.wait_running(job_id)
        ready = self.workdir / "ready"
        eventually(ready.exists, 30, "the recorder's trap")
        return job_id

    def signals_recorded(self, job_id: int) -> list[str]:
        self.cluster.wait_for(job_id, {"COMPLETED", "FAILED"}, timeout=self.patience)
        try:
            return (self.workdir / "signals.txt").read_text().split()
        except FileNotFoundError:
            return []

    def wait_running(self, job_id: int) -> None:
        self.cluster.wait_for(job_id, {"RUNNING"}, timeout=self.patience)

    def is_held(self, job_id: int) -> bool:
        return self.cluster.job(job_id)["Priority"] == "0"

    def release(self, job_id: int) -> None:
        self.cluster.release(job_id)

    def cancel(self, job_id: int) -> None:
        self.cluster.cancel(job_id)

    def resume_node(self, node: str) -> None:
        self.cluster.resume_node(node)

    def close(self) -> None:
        for job_id in self.submitted:
            self.cluster.cancel(job_id)


class FakeSlurmWorld:
    """The fake Slurm's world. The fake knows tagged jobs only (job_submit.lua tags
    them; the adapters filter on the tag): a job submitted without --checkpoint
    gets an id the fake never hears of."""

    user = "alice"
    nodes: tuple[str, ...] = ("node1", "node2")
    patience = 0.0  # the fake changes at once

    def __init__(self, slurm: FakeSlurm) -> None:
        self.slurm = slurm
        self.uid = os.getuid()
        self._next_id = 1000
        self._held: set[int] = set()
        self._node: dict[int, str] = {}
        self._signals: dict[int, list[str]] = {}
        slurm.on_signal = self._batch_process

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def submit(
        self,
        *,
        checkpoint: int | None = 120,
        no_chain: bool = False,
        time_limit: int | None = None,
        held: bool = False,
        node: str | None = None,
    ) -> int:
        job_id = self._new_id()
        if checkpoint is None:
            return job_id
        self.slurm.add(
            JobInfo(
                job_id=job_id,
                state="PENDING",
                user=self.user,
                uid=self.uid,
                batch_host=None,
                node_list="",
                start_time=None,
                time_limit=None if time_limit is None else time_limit * 60,
                end_time=None,
                restarts=0,
                interval=checkpoint,
                no_chain=no_chain,
            )
        )
        if node is not None:
            self._node[job_id] = node
        if held:
            self._held.add(job_id)
        else:
            self._schedule(job_id)
        return job_id

    def _schedule(self, job_id: int) -> None:
        """What Slurm's scheduler does with a pending job that is not held: start it."""
        job = self.slurm.jobs[job_id]
        if job_id in self._held or job.state not in states.PENDING:
            return
        node = self._node.get(job_id, self.nodes[0])
        now = datetime.now(UTC).replace(microsecond=0)
        limit = job.time_limit
        self.slurm.set(
            job_id,
            state="RUNNING",
            batch_host=node,
            node_list=node,
            start_time=now,
            end_time=None if limit is None else now + timedelta(seconds=limit),
        )

    def submit_signal_recorder(self) -> int:
        job_id = self.submit()
        self._signals[job_id] = []
        return job_id

    def _batch_process(self, job_id: int, signal: str) -> None:
        # The recorder's batch process: it notes the signal and exits; the fake's
        # other jobs ignore theirs, as a sleeping batch script would with a trap.
        if job_id in self._signals and signal == "USR1":
            self._signals[job_id].append("batch")
            self.slurm.set(job_id, state="COMPLETED")

    def signals_recorded(self, job_id: int) -> list[str]:
        return list(self._signals.get(job_id, []))

    def wait_running(self, job_id: int) -> None:
        self._schedule(job_id)
        if not self.slurm.jobs[job_id].is_running:
            raise AssertionError(f"job {job_id} is {self.slurm.jobs[job_id].state}, not running")

    def is_held(self, job_id: int) -> bool:
        return job_id in self._held or self.slurm.jobs[job_id].state == "REQUEUE_HOLD"

    def release(self, job_id: int) -> None:
        self._held.discard(job_id)
        if self.slurm.jobs[job_id].state == "REQUEUE_HOLD":
            self.slurm.set(job_id, state="PENDING")
        self._schedule(job_id)

    def cancel(self, job_id: int) -> None:
        job = self.slurm.jobs.get(job_id)
        if job is not None and not job.is_finished:
            self.slurm.set(job_id, state="CANCELLED")

    def resume_node(self, node: str) -> None:
        self.slurm.nodes[node] = dataclasses.replace(
            self.slurm.nodes[node], state="idle", reason=None
        )

    def close(self) -> None:
        for job_id in list(self.slurm.jobs):
            self.cancel(job_id)


def eventually(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first true value `check` returns, asked again until `timeout` seconds passed
    (the cluster changes a job's state in its own time; the fake at once)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
