"""What ckpt-admin may ask of the catalog, answered for one caller.

`Operations` is the one implementation: the service's API runs it for the uid
a MUNGE credential proved, and root's ckpt-admin runs it in its own process
against the catalog. Every check of who may see or do what (`authz`) and of
whether the job can take the action happens here, so both paths decide alike.
Actions are recorded with the caller's verified name, never one the client sent.
`Backend` is what the commands call: `Operations`, or the API's client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from slurm_ckpt.cli.errors import NotAllowed, NotCheckpointed, UnknownJob
from slurm_ckpt.config import Settings
from slurm_ckpt.db.catalog import (
    ActionRecord,
    Catalog,
    CheckpointActivity,
    CheckpointRecord,
    EventRecord,
    JobRecord,
    JobSummary,
)
from slurm_ckpt.db.retention import plan
from slurm_ckpt.db.states import OPEN_JOB_STATES, ActionKind, CheckpointState, JobState
from slurm_ckpt.errors import CatalogNotFound
from slurm_ckpt.service import authz
from slurm_ckpt.service.authz import Caller, Verb
from slurm_ckpt.service.imagecheck import Progress, Verified, check_checkpoint
from slurm_ckpt.store.jobfs import shared_job_files

MAX_OPEN_ACTIONS_PER_USER = 10  # pending or running actions one user may have


@dataclass(frozen=True)
class JobQuery:
    """`list-jobs`' filters; no states and not `include_ended`: the open jobs only."""

    user_name: str | None = None
    states: frozenset[JobState] = frozenset()
    node: str | None = None  # the batch host
    include_ended: bool = False


@dataclass(frozen=True)
class VerifyOptions:
    """Which of a job's valid checkpoints `verify` checks, and how deeply."""

    seq: int | None = None  # None: every valid one
    read_data: bool = False  # re-hash every byte, not only the structure


@dataclass(frozen=True)
class JobListing:
    """One row of `list-jobs`."""

    summary: JobSummary
    activity: CheckpointActivity | None


@dataclass(frozen=True)
class JobDetail:
    """`show`: the job, its checkpoints (newest first) and newest events."""

    job: JobRecord
    checkpoints: list[CheckpointRecord]
    events: list[EventRecord]


@dataclass(frozen=True)
class JobCheckpoints:
    job: JobRecord
    checkpoints: list[CheckpointRecord]


@dataclass(frozen=True)
class GcItem:
    """An image `gc --yes` would delete, and why."""

    job_id: int  # Slurm's
    seq: int
    state: CheckpointState
    completed_at: datetime | None
    total_bytes: int | None
    why: str  # failed | retention | already obsolete


@dataclass(frozen=True)
class GcPlan:
    keep_last: int | None
    keep_within_seconds: int | None
    minimum: int
    items: list[GcItem]


@dataclass(frozen=True)
class VerifyReport:
    job_id: int
    results: list[Verified]


class Backend(Protocol):
    """The questions ckpt-admin's commands ask. Each raises NotAllowed (exit 8),
    UnknownJob (3), NotCheckpointed (4), CatalogNotFound (3) or CatalogError (5)."""

    def list_jobs(self, *, cluster: str, query: JobQuery) -> list[JobListing]: ...

    def show(self, *, cluster: str, job_id: int, events: int) -> JobDetail: ...

    def checkpoints(self, *, cluster: str, job_id: int) -> JobCheckpoints: ...

    def checkpoint(self, *, cluster: str, job_id: int) -> ActionRecord: ...

    def requeue(self, *, cluster: str, job_id: int, checkpoint_first: bool) -> ActionRecord: ...

    def drain(self, *, cluster: str, node: str, reason: str | None) -> ActionRecord: ...

    def gc(self, *, cluster: str) -> ActionRecord: ...

    def gc_plan(self, *, cluster: str) -> GcPlan: ...

    def action(self, *, action_id: int) -> ActionRecord: ...

    def verify(
        self, *, cluster: str, job_id: int, options: VerifyOptions, progress: Progress | None = None
    ) -> VerifyReport: ...


@dataclass(eq=False)
class Operations:
    """`Backend` over the catalog, for one caller."""

    catalog: Catalog
    settings: Settings
    caller: Caller
    clock: Callable[[], datetime]

    @property
    def admin_group(self) -> str:
        return self.settings.admin.group

    # Reading

    def list_jobs(self, *, cluster: str, query: JobQuery) -> list[JobListing]:
        authz.require_user_filter(self.caller, query.user_name, self.admin_group)
        user_name = query.user_name if self.caller.is_admin else self.caller.name
        summaries = self.catalog.job_summaries(cluster=cluster, user_name=user_name)
        activity = self.catalog.checkpoint_activity(cluster=cluster, user_name=user_name)
        rows = []
        for summary in summaries:
            job = summary.job
            if not authz.may_see(self.caller, job):
                continue  # same name, other uid: not theirs
            if query.states and job.state not in query.states:
                continue
            if not query.states and not query.include_ended and job.state not in OPEN_JOB_STATES:
                continue
            if query.node is not None and job.batch_host != query.node:
                continue
            rows.append(JobListing(summary, activity.get(job.id)))
        return rows

    def show(self, *, cluster: str, job_id: int, events: int) -> JobDetail:
        job = self._job(cluster, job_id, Verb.SEE)
        return JobDetail(
            job, self.catalog.checkpoints(job.id), self.catalog.events(job.id, limit=events)
        )

    def checkpoints(self, *, cluster: str, job_id: int) -> JobCheckpoints:
        job = self._job(cluster, job_id, Verb.SEE)
        return JobCheckpoints(job, self.catalog.checkpoints(job.id))

    def action(self, *, action_id: int) -> ActionRecord:
        try:
            record = self.catalog.get_action(action_id)
        except CatalogNotFound:
            raise CatalogNotFound(f"action {action_id} is not in the catalog") from None
        if not authz.may_follow(self.caller, record):
            raise NotAllowed(f"action {action_id} was requested by another user")
        return record

    def gc_plan(self, *, cluster: str) -> GcPlan:
        """What `gc --yes` would delete now among the jobs the caller sees."""
        policy = self.settings.retention.policy
        now = self.clock()
        user = None if self.caller.is_admin else self.caller.name
        items: list[GcItem] = []
        for summary in self.catalog.job_summaries(cluster=cluster, user_name=user):
            job = summary.job
            if not authz.may_see(self.caller, job):
                continue
            records = self.catalog.checkpoints(job.id)
            for c in plan(records, policy, now).obsolete:
                why = "failed" if c.state == CheckpointState.FAILED else "retention"
                items.append(_gc_item(job, c, why))
            items.extend(
                _gc_item(job, c, "already obsolete")
                for c in records
                if c.state == CheckpointState.OBSOLETE
            )
        return GcPlan(
            keep_last=policy.keep_last,
            keep_within_seconds=None
            if policy.keep_within is None
            else int(policy.keep_within.total_seconds()),
            minimum=policy.minimum,
            items=items,
        )

    def verify(
        self, *, cluster: str, job_id: int, options: VerifyOptions, progress: Progress | None = None
    ) -> VerifyReport:
        job = self._job(cluster, job_id, Verb.VERIFY)
        seq = options.seq
        records = [c for c in self.catalog.valid_checkpoints(job.id) if seq is None or c.seq == seq]
        if not records:
            which = f"valid checkpoint {seq}" if seq is not None else "valid checkpoint"
            raise NotCheckpointed(f"job {job_id} has no {which} to verify")
        files = shared_job_files(
            self.settings.paths.store_root, self.settings.service.store_timeout
        )
        return VerifyReport(
            job.slurm_job_id,
            [
                check_checkpoint(job, files, c, read_data=options.read_data, progress=progress)
                for c in records
            ],
        )

    # Actions: recorded for the service, which carries them out

    def checkpoint(self, *, cluster: str, job_id: int) -> ActionRecord:
        job = self._job(cluster, job_id, Verb.CHECKPOINT)
        _require_running(job, "checkpointed")
        # One open checkpoint action per job, whoever asked: a second request
        # follows the first instead of queueing another dump.
        waiting = self.catalog.open_actions(
            cluster, slurm_job_id=job.slurm_job_id, kind=ActionKind.CHECKPOINT
        )
        if waiting:
            return waiting[0]
        return self._submit(ActionKind.CHECKPOINT, cluster, job=job)

    def requeue(self, *, cluster: str, job_id: int, checkpoint_first: bool) -> ActionRecord:
        authz.require(self.caller, Verb.REQUEUE, self.admin_group)
        job = self._job(cluster, job_id, Verb.REQUEUE)
        _require_running(job, "requeued")
        if not checkpoint_first and self.catalog.newest_valid(job.id) is None:
            raise NotCheckpointed(
                f"job {job_id} has no valid checkpoint: a requeue would start it over; "
                "use --checkpoint-first"
            )
        return self._submit(
            ActionKind.REQUEUE, cluster, job=job, options={"checkpoint_first": checkpoint_first}
        )

    def drain(self, *, cluster: str, node: str, reason: str | None) -> ActionRecord:
        authz.require(self.caller, Verb.DRAIN, self.admin_group)
        reason = reason or f"ckpt-admin drain by {self.caller.name}"
        return self._submit(
            ActionKind.DRAIN, cluster, node=node, options={"reason": " ".join(reason.split())}
        )

    def gc(self, *, cluster: str) -> ActionRecord:
        authz.require(self.caller, Verb.GC, self.admin_group)
        return self._submit(ActionKind.GC, cluster)

    def _submit(
        self,
        kind: ActionKind,
        cluster: str,
        *,
        job: JobRecord | None = None,
        node: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> ActionRecord:
        if not self.caller.is_admin:
            # A user cannot flood the service's queue, which admins' drains share.
            mine = self.catalog.open_actions(cluster, requested_by=self.caller.name)
            if len(mine) >= MAX_OPEN_ACTIONS_PER_USER:
                raise NotAllowed(
                    f"you have {len(mine)} actions under way: wait for them "
                    f"(at most {MAX_OPEN_ACTIONS_PER_USER} at a time)"
                )
        return self.catalog.submit_action(
            kind,
            cluster=cluster,
            requested_by=self.caller.name,
            now=self.clock(),
            slurm_job_id=None if job is None else job.slurm_job_id,
            node=node,
            options=options or {},
        )

    def _job(self, cluster: str, slurm_job_id: int, verb: Verb) -> JobRecord:
        """The tracked job, once the caller may `verb` it; UnknownJob, NotAllowed."""
        job = self.catalog.find_job(cluster, slurm_job_id)
        if job is None:
            raise UnknownJob(slurm_job_id, cluster)
        authz.require(self.caller, verb, self.admin_group, job)
        return job


def _require_running(job: JobRecord, verb: str) -> None:
    if job.state != JobState.RUNNING:
        raise NotCheckpointed(
            f"job {job.slurm_job_id} is {job.state}: only a running job can be {verb}"
        )


def _gc_item(job: JobRecord, c: CheckpointRecord, why: str) -> GcItem:
    return GcItem(job.slurm_job_id, c.seq, c.state, c.completed_at, c.total_bytes, why)
