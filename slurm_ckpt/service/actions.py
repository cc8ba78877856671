"""Admin actions: `ckpt-admin` records a request in the catalog, the service carries it out.

Only the service acts on jobs, so an admin's checkpoint never races a periodic
one and a requeue never races the service's own. Every second the "actions"
task claims its cluster's PENDING actions (the catalog hands each to exactly
one service instance) and moves every action it holds one step on; nothing
here waits for a dump.

- checkpoint JOB: an admin checkpoint of a tracked, running job. When one of the
  job's checkpoints is already in flight, that one is followed and reported.
  DONE when it is VALID, FAILED with its reason otherwise.
- requeue JOB [checkpoint_first]: the checkpoint first when asked (a failed one
  ends the action: nothing may be lost), then `scontrol requeue`; the launcher
  restores the newest published image on the next start.
- drain NODE [reason]: the node is drained first, so no new job lands there,
  then every checkpointed job whose batch process runs there is checkpointed
  and requeued. A job whose checkpoint fails stays running on the draining node
  (never requeued, even when an older image exists: its work since then would
  be lost); the action ends FAILED and its detail names the job and the reason.
- gc: retention applied to every tracked job, interrupted deletions finished.

A service that stops leaves its actions RUNNING. The next instance fails them
("interrupted by a service restart; run the command again") before it claims
new ones: every action may safely run again (drain and gc are idempotent, a
second checkpoint is only a newer image) and the last progress is kept in the
detail, so an admin sees whether a requeue already went through. One service
instance is active per cluster, so a RUNNING action at start is an orphan.

Here: the runner (claim, recovery, each job's checkpoint and requeue steps, the
progress and end it writes); what each action kind plans is in plans.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Protocol

from slurm_ckpt.db.catalog import ActionRecord, Catalog, CheckpointRecord, JobRecord
from slurm_ckpt.db.states import ActionKind, ActionState, CheckpointKind, CheckpointState
from slurm_ckpt.errors import CatalogConflict, CatalogError, SlurmError
from slurm_ckpt.service.plans import MIB, Move, Planner, Pruning, Step, Task, end_of, progress_of
from slurm_ckpt.service.requests import InFlight, Outcome, Sent
from slurm_ckpt.slurm.base import SlurmAdapter

log = logging.getLogger(__name__)

RESTARTED = "interrupted by a service restart; run the command again"


class Checkpointing(Protocol):
    """What admin actions need of the service's checkpoints (schedule.Schedule)."""

    def checkpoint_now(self, job_id: int, kind: CheckpointKind = CheckpointKind.PERIODIC) -> Sent:
        """Never raises: a request that could not be made is Sent.FAILED."""
        ...

    def in_flight(self) -> list[InFlight]: ...


@dataclass(eq=False)
class ActionRunner:
    """Carries out the admin actions of one cluster."""

    catalog: Catalog
    slurm: SlurmAdapter
    checkpointing: Checkpointing
    pruning: Pruning
    _: KW_ONLY
    cluster: str
    clock: Callable[[], datetime]
    stopped: threading.Event
    requeues: threading.Lock = field(default_factory=threading.Lock)  # see Syncer.requeues
    _tasks: dict[int, Task] = field(init=False, default_factory=dict)  # by action id, for `run`
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    # Outcomes of watched jobs' checkpoints, in arrival order, by catalog job id.
    _outcomes: dict[int, list[Outcome]] = field(init=False, default_factory=dict)
    _recovered: bool = field(init=False, default=False)
    _planner: Planner = field(init=False)

    def __post_init__(self) -> None:
        self._planner = Planner(self.catalog, self.slurm, self.pruning, cluster=self.cluster)

    # -- entry points ----------------------------------------------------------

    def on_outcome(self, outcome: Outcome) -> None:
        """A checkpoint ended (called from the collecting thread)."""
        with self._lock:
            seen = self._outcomes.get(outcome.job.id)
            if seen is not None:
                seen.append(outcome)

    def run(self) -> None:
        """One pass: recover once, claim new actions, advance every held one."""
        if self.stopped.is_set():
            return  # a stopping service leaves its actions to the next instance
        now = self.clock()
        try:
            if not self._recovered:
                self.recover(now)
            claimed = self.catalog.claim_actions(self.cluster, now)
        except CatalogError as exc:
            log.warning("actions not claimed, catalog unavailable: %s", exc)
            claimed = []
        for action in claimed:
            log.info(
                "action %d: %s %s requested by %s",
                action.id,
                action.kind,
                _target(action),
                action.requested_by,
            )
            self._tasks[action.id] = Task(action)
        for task in list(self._tasks.values()):
            self._advance(task, now)

    def recover(self, now: datetime) -> None:
        """Fail what a previous instance left RUNNING; raises CatalogError to try again."""
        for action in self.catalog.running_actions(self.cluster):
            if action.id in self._tasks:
                continue
            got_to = f" (it had got to: {action.progress})" if action.progress else ""
            try:
                self.catalog.update_action(
                    action.id, now, state=ActionState.FAILED, detail=RESTARTED + got_to
                )
            except CatalogConflict as exc:
                log.info("action %d: left as it is: %s", action.id, exc)
                continue
            log.warning("action %d (%s): %s%s", action.id, action.kind, RESTARTED, got_to)
        self._recovered = True

    # -- one step of one action ------------------------------------------------

    def _advance(self, task: Task, now: datetime) -> None:
        action = task.action
        try:
            if task.moves is None:
                self._planner.plan(task, now)
                self._watch(task)  # before the first request, so no outcome is missed
            for move in task.moves or []:
                self._step(task, move, now)
            self._report(task, now)
        except CatalogError as exc:
            log.warning("action %d: catalog unavailable, trying again: %s", action.id, exc)
        except Exception as exc:
            # A bug must end the action with a reason, not leave it RUNNING for ever.
            log.exception("action %d: internal error", action.id)
            task.result = (ActionState.FAILED, f"internal error (see the service log): {exc}")
            try:
                self._report(task, now)
            except CatalogError as again:
                log.warning("action %d: end not recorded, trying again: %s", action.id, again)

    def _step(self, task: Task, move: Move, now: datetime) -> None:
        # Steps fall through: a checkpoint that ended at once is handled in the same pass.
        if move.step == Step.CHECKPOINT:
            self._request(move)
        if move.step == Step.WAIT:
            self._wait(move)
        if move.step == Step.REQUEUE:
            self._requeue(task, move, now)

    def _request(self, move: Move) -> None:
        job = _tracked(move)
        before = self._seen(job.id)
        sent = self.checkpointing.checkpoint_now(job.id, CheckpointKind.ADMIN)
        later = self._since(job.id, before)
        if sent in (Sent.SENT, Sent.IN_FLIGHT):
            flight = self._in_flight(job)
            if flight is not None:
                move.checkpoint_id, move.seq = flight.id, flight.seq
                move.step = Step.WAIT
            elif later:
                self._ended(move, later[-1])  # it ended before we looked
            # Otherwise it ended unseen, or was never there: ask again next time.
        elif sent == Sent.FAILED:
            move.step = Step.FAILED
            move.detail = (
                _describe(later[-1]) if later else "checkpoint not requested (see the service log)"
            )
        # ADMISSION_FULL (or a back-off): ask again next second.

    def _wait(self, move: Move) -> None:
        job = _tracked(move)
        with self._lock:
            arrived = [o for o in self._outcomes.get(job.id, []) if o.seq == move.seq]
        if arrived:
            self._ended(move, arrived[-1])
            return
        if any(f.checkpoint.id == move.checkpoint_id for f in self.checkpointing.in_flight()):
            return
        if move.checkpoint_id is None:
            return
        # Not ours, or it ended without telling us: the catalog row says how it went.
        row = self.catalog.get_checkpoint(move.checkpoint_id)
        if row.state != CheckpointState.REQUESTED:
            self._ended(move, _outcome_of(job, row))

    def _ended(self, move: Move, outcome: Outcome) -> None:
        move.seq = outcome.seq
        move.detail = _describe(outcome)
        if not outcome.valid:
            move.step = Step.FAILED
        else:
            move.step = Step.REQUEUE if move.requeue else Step.DONE

    def _requeue(self, task: Task, move: Move, now: datetime) -> None:
        with self.requeues:
            self._requeue_now(task, move, now)

    def _requeue_now(self, task: Task, move: Move, now: datetime) -> None:
        action, job = task.action, _tracked(move)
        if not move.checkpoint:
            newest = self.catalog.newest_valid(job.id)
            move.detail = "no new checkpoint; " + (
                f"it resumes from checkpoint {newest.seq}"
                if newest
                else "no valid image: it starts again"
            )
        try:
            self.slurm.requeue(job.slurm_job_id)
        except SlurmError as exc:
            move.step = Step.FAILED
            move.detail = _join(move.detail, f"requeue failed: {exc}")
            return
        move.step = Step.DONE
        move.detail = _join(move.detail, "requeued")
        via = (
            "ckpt-admin" if action.kind == ActionKind.REQUEUE else f"ckpt-admin drain {action.node}"
        )
        try:
            self.catalog.record_requeue(job.id, f"requeued by {action.requested_by} ({via})", now)
        except CatalogError as exc:
            # Done in Slurm: the next sync records it as a requeue by Slurm.
            log.warning("job %d: requeue not recorded: %s", job.slurm_job_id, exc)
        log.info("action %d: job %d requeued", action.id, job.slurm_job_id)

    # -- reporting ---------------------------------------------------------------

    def _report(self, task: Task, now: datetime) -> None:
        """Write progress when it changed; write the end and drop the task when it ended."""
        action = task.action
        ended = task.result or end_of(task)
        if ended is None:
            progress = progress_of(task)
            if progress != task.progress:
                self.catalog.update_action(action.id, now, progress=progress)
                task.progress = progress
            return
        state, detail = ended
        try:
            self.catalog.update_action(action.id, now, state=state, detail=detail, progress="")
        except CatalogConflict as exc:
            log.warning("action %d: end not recorded: %s", action.id, exc)
        log.info("action %d: %s: %s", action.id, state, detail)
        del self._tasks[action.id]
        self._unwatch()

    # -- checkpoint outcomes -------------------------------------------------------

    def _watch(self, task: Task) -> None:
        task.watched = {m.job.id for m in task.moves or [] if m.job is not None}
        with self._lock:
            for job_id in task.watched:
                self._outcomes.setdefault(job_id, [])

    def _unwatch(self) -> None:
        still = {job_id for task in self._tasks.values() for job_id in task.watched}
        with self._lock:
            for job_id in set(self._outcomes) - still:
                del self._outcomes[job_id]

    def _seen(self, job_id: int) -> int:
        with self._lock:
            return len(self._outcomes.get(job_id, []))

    def _since(self, job_id: int, before: int) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes.get(job_id, [])[before:])

    def _in_flight(self, job: JobRecord) -> CheckpointRecord | None:
        """The job's checkpoint in flight: this instance's, or one another instance asked for."""
        for flight in self.checkpointing.in_flight():
            if flight.job.id == job.id:
                return flight.checkpoint
        requested = self.catalog.checkpoints(job.id, states=[CheckpointState.REQUESTED])
        return requested[0] if requested else None


def _tracked(move: Move) -> JobRecord:
    if move.job is None:
        raise ValueError(f"job {move.slurm_job_id} is not tracked")
    return move.job


def _describe(outcome: Outcome) -> str:
    if outcome.valid:
        return (
            f"checkpoint {outcome.seq} VALID, {outcome.total_bytes / MIB:.1f} MiB, "
            f"dump {outcome.dump_seconds:.2f} s"
        )
    return f"checkpoint {outcome.seq} FAILED: {outcome.detail}"


def _outcome_of(job: JobRecord, row: CheckpointRecord) -> Outcome:
    # Only a VALID checkpoint has a manifest checksum; retention may have moved it on since.
    return Outcome(
        job=job,
        seq=row.seq,
        valid=row.manifest_checksum is not None,
        detail=row.error or f"checkpoint {row.seq} is {row.state}",
        total_bytes=row.total_bytes or 0,
        dump_seconds=row.dump_seconds or 0.0,
        freeze_seconds=row.freeze_seconds or 0.0,
        kind=CheckpointKind.ADMIN,
    )


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second


def _target(action: ActionRecord) -> str:
    if action.slurm_job_id is not None:
        return f"job {action.slurm_job_id}"
    return f"node {action.node}" if action.node else "all jobs"
