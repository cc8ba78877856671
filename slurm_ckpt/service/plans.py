"""What each admin action comes to: the moves it plans, and what it reports.

An action is planned once, when the runner (actions.py) first holds it: a
checkpoint or requeue of one job is one move; a drain drains the node, then plans
a checkpoint and a requeue for every checkpointed job running there; gc runs
whole while it is planned (retention and interrupted deletions of every tracked
job) and plans no move. A request that cannot run ends here with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from slurm_ckpt.db.catalog import ActionRecord, Catalog, JobRecord
from slurm_ckpt.db.states import ActionKind, ActionState, CheckpointState, JobState
from slurm_ckpt.errors import CatalogError, SlurmError
from slurm_ckpt.slurm.base import SlurmAdapter
from slurm_ckpt.store import untrusted

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class Step(StrEnum):
    """Where one job's part of an action is."""

    CHECKPOINT = "checkpoint"  # ask for a checkpoint (again, while admission is full)
    WAIT = "wait"  # a checkpoint is in flight
    REQUEUE = "requeue"
    DONE = "done"
    FAILED = "failed"


@dataclass
class Move:
    """One job's part of an action: a checkpoint, a requeue, or a checkpoint then a requeue."""

    slurm_job_id: int
    job: JobRecord | None  # None: Slurm runs it but the service does not track it yet
    checkpoint: bool
    requeue: bool
    step: Step
    checkpoint_id: int | None = None
    seq: int | None = None
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.step in (Step.DONE, Step.FAILED)


@dataclass
class Task:
    """An action this instance claimed, and how far it got."""

    action: ActionRecord
    moves: list[Move] | None = None  # None until planned
    result: tuple[ActionState, str] | None = None  # set when the action ended early
    head: str = ""  # what preceded the moves ("node1 drained")
    progress: str = ""  # the progress last written to the catalog
    watched: set[int] = field(default_factory=set)  # catalog job ids whose outcomes matter


class Pruning(Protocol):
    """What gc needs (images.JobImages). Both raise CatalogError, StoreError."""

    def apply_retention(self, job: JobRecord, now: datetime) -> None: ...

    def delete_obsolete(self, job: JobRecord) -> None: ...


@dataclass(eq=False)
class Planner:
    """Checks each action's request and decides its moves."""

    catalog: Catalog
    slurm: SlurmAdapter
    pruning: Pruning
    _: KW_ONLY
    cluster: str

    def plan(self, task: Task, now: datetime) -> None:
        """Check the request and decide the moves; an action that cannot run ends here.

        `task.moves` is set only once the plan is complete: a CatalogError on the
        way leaves it None, and the next pass plans again (every step so far, a
        drain of the node included, may be done twice)."""
        task.moves = self._moves(task, now)

    def _moves(self, task: Task, now: datetime) -> list[Move]:
        action = task.action
        if action.kind == ActionKind.GC:
            task.result = self._gc(now)
            return []
        if action.kind == ActionKind.DRAIN:
            return self._plan_drain(task)
        if action.slurm_job_id is None:  # the catalog's CHECK constraint forbids it
            task.result = (ActionState.FAILED, f"a {action.kind} action must name a job")
            return []
        job = self.catalog.find_job(self.cluster, action.slurm_job_id)
        first = action.kind == ActionKind.CHECKPOINT or bool(action.options.get("checkpoint_first"))
        refusal = _refusal(action.slurm_job_id, job, needs_running=first)
        if refusal is not None:
            task.result = (ActionState.FAILED, refusal)
            return []
        return [
            Move(
                action.slurm_job_id,
                job,
                checkpoint=first,
                requeue=action.kind == ActionKind.REQUEUE,
                step=Step.CHECKPOINT if first else Step.REQUEUE,
            )
        ]

    def _plan_drain(self, task: Task) -> list[Move]:
        action = task.action
        node = str(action.node)
        reason = str(
            action.options.get("reason") or f"drained by {action.requested_by} (ckpt-admin)"
        )
        slurm = self.slurm
        try:
            # First, so no new job lands there while the running ones are moved.
            slurm.drain_node(node, reason)
        except SlurmError as exc:
            task.result = (ActionState.FAILED, f"{node} not drained: {exc}")
            return []
        task.head = f"{node} drained"
        try:
            running = [j for j in slurm.list_checkpointed_jobs() if j.is_running]
        except SlurmError as exc:
            task.result = (
                ActionState.FAILED,
                f"{node} drained, but its jobs could not be listed: {exc}; run the command again",
            )
            return []
        ids = sorted(j.job_id for j in running if j.batch_host == node)
        known = self.catalog.jobs_for_sync(self.cluster, ids)
        moves = []
        for slurm_job_id in ids:
            job = known.get(slurm_job_id)
            move = Move(slurm_job_id, job, checkpoint=True, requeue=True, step=Step.CHECKPOINT)
            if job is None:
                move.step = Step.FAILED
                move.detail = "not tracked by the service yet (it started moments ago)"
            moves.append(move)
        log.info("action %d: %s, %d checkpointed jobs to move", action.id, task.head, len(ids))
        return moves

    def _gc(self, now: datetime) -> tuple[ActionState, str]:
        jobs = [s.job for s in self.catalog.job_summaries(cluster=self.cluster)]
        images = size = 0
        failures = []
        for job in jobs:
            before = {
                c.id for c in self.catalog.checkpoints(job.id) if c.state != CheckpointState.DELETED
            }
            if not before:
                continue
            try:
                self.pruning.apply_retention(job, now)
                self.pruning.delete_obsolete(job)
            except CatalogError:
                raise  # the whole pass runs again: both steps pick up where they stopped
            except Exception as exc:  # one job's folder never stops the others' gc
                failures.append(f"job {job.slurm_job_id}: {untrusted.text(exc, 300)}")
            for c in self.catalog.checkpoints(job.id, states=[CheckpointState.DELETED]):
                if c.id in before:
                    images += 1
                    size += c.total_bytes or 0
        detail = f"deleted {images} images, {size / MIB:.1f} MiB ({len(jobs)} jobs looked at)"
        if failures:
            return ActionState.FAILED, f"{detail}; not done: {'; '.join(failures)}"
        return ActionState.DONE, detail


def _refusal(slurm_job_id: int, job: JobRecord | None, *, needs_running: bool) -> str | None:
    if job is None:
        return (
            f"job {slurm_job_id} is not tracked by slurm-ckpt: it was not submitted "
            "with --checkpoint, or the service has not seen it yet"
        )
    if needs_running and job.state != JobState.RUNNING:
        return f"job {slurm_job_id} is {job.state}, not running: nothing to checkpoint"
    return None


# -- what a task reports ----------------------------------------------------------


def end_of(task: Task) -> tuple[ActionState, str] | None:
    """How the action ended once every move finished; None while one has not."""
    moves = task.moves or []
    if not all(m.finished for m in moves):
        return None
    failed = [m for m in moves if m.step == Step.FAILED]
    state = ActionState.FAILED if failed else ActionState.DONE
    if task.action.kind != ActionKind.DRAIN:
        return state, moves[0].detail
    if not moves:
        return state, f"{task.head}; no checkpointed job was running there"
    moved = [m for m in moves if m.step == Step.DONE]
    parts = [f"{task.head}; {len(moved)} of {len(moves)} jobs moved"]
    if moved:
        parts.append("moved: " + ", ".join(f"{m.slurm_job_id} ({m.detail})" for m in moved))
    if failed:
        parts.append(
            "left running there: " + ", ".join(f"{m.slurm_job_id} ({m.detail})" for m in failed)
        )
    return state, "; ".join(parts)


def progress_of(task: Task) -> str:
    """One line on how far a running action got, for `ckpt-admin --wait`."""
    moves = task.moves or []
    if task.action.kind == ActionKind.DRAIN:
        done = sum(m.step == Step.DONE for m in moves)
        return f"{done} of {len(moves)} jobs moved"
    (move,) = moves
    if move.step == Step.WAIT:
        return f"checkpoint {move.seq} in flight"
    if move.step == Step.CHECKPOINT:
        return "waiting for a free checkpoint slot"
    return "requeueing"
