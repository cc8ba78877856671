"""What `ckpt-admin` shows about jobs, checkpoints, events and actions: built once
from catalog records, rendered as table cells for people and as JSON objects for
scripts (docs/cli-json.md), so both always say the same thing. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slurm_ckpt.cli import humanize as h
from slurm_ckpt.cli.output import Column
from slurm_ckpt.db.catalog import (
    ActionRecord,
    CheckpointActivity,
    CheckpointRecord,
    EventRecord,
    JobRecord,
    JobSummary,
)
from slurm_ckpt.db.states import OPEN_JOB_STATES, CheckpointState, JobState


@dataclass(frozen=True)
class JobView:
    job: JobRecord
    last_valid_at: datetime | None
    valid_count: int
    valid_bytes: int
    activity: CheckpointActivity | None

    @classmethod
    def of_summary(cls, summary: JobSummary, activity: CheckpointActivity | None) -> JobView:
        return cls(
            summary.job, summary.last_valid_at, summary.valid_count, summary.valid_bytes, activity
        )

    @classmethod
    def of_checkpoints(cls, job: JobRecord, checkpoints: Sequence[CheckpointRecord]) -> JobView:
        """The same view from a job's full checkpoint list (`show`)."""
        valid = [c for c in checkpoints if c.state == CheckpointState.VALID]
        failed = [c for c in checkpoints if c.error is not None]
        last_failed = max(failed, key=lambda c: c.seq, default=None)
        activity = None
        if checkpoints:
            activity = CheckpointActivity(
                last_requested_at=max(c.created_at for c in checkpoints),
                last_failed_at=None if last_failed is None else last_failed.completed_at,
                last_failed_seq=None if last_failed is None else last_failed.seq,
                last_error=None if last_failed is None else last_failed.error,
            )
        return cls(
            job,
            max((c.completed_at for c in valid if c.completed_at), default=None),
            len(valid),
            sum(c.total_bytes or 0 for c in valid),
            activity,
        )

    def next_due(self) -> datetime | None:
        """One interval after the newest request (or after tracking began), while the
        job runs and is checkpointable. An estimate: see docs/cli-json.md."""
        if self.job.state != JobState.RUNNING or self.job.uncheckpointable_reason:
            return None
        base = self.job.created_at
        if self.activity is not None and self.activity.last_requested_at is not None:
            base = self.activity.last_requested_at
        return base + timedelta(seconds=self.job.interval_seconds)

    def recent_failure(self) -> bool:
        """An open job whose newest outcome is a failure: nothing valid came after it."""
        a = self.activity
        if a is None or a.last_error is None or self.job.state not in OPEN_JOB_STATES:
            return False
        return self.last_valid_at is None or (
            a.last_failed_at is not None and a.last_failed_at > self.last_valid_at
        )

    def problem(self) -> str:
        if self.job.uncheckpointable_reason:
            return f"uncheckpointable: {self.job.uncheckpointable_reason}"
        if self.recent_failure() and self.activity is not None:
            return f"checkpoint {self.activity.last_failed_seq} failed: {self.activity.last_error}"
        return ""

    def to_json(self, now: datetime) -> dict[str, Any]:
        job, a = self.job, self.activity
        due = self.next_due()
        failure = None
        if a is not None and a.last_error is not None:
            failure = {
                "at": h.iso(a.last_failed_at),
                "seq": a.last_failed_seq,
                "error": a.last_error,
            }
        return {
            "job_id": job.slurm_job_id,
            "cluster": job.cluster,
            "user": job.user_name,
            "uid": job.uid,
            "state": job.state.value,
            "node": job.batch_host,
            "interval_seconds": job.interval_seconds,
            "last_valid_at": h.iso(self.last_valid_at),
            "last_valid_age_seconds": _seconds(now - self.last_valid_at)
            if self.last_valid_at
            else None,
            "valid_images": self.valid_count,
            "valid_bytes": self.valid_bytes,
            "restarts": job.restart_count,
            "next_due_at": h.iso(due),
            "next_due_in_seconds": None if due is None else max(0, _seconds(due - now)),
            "uncheckpointable_reason": job.uncheckpointable_reason,
            "last_failure": failure,
            "problem": self.problem(),
            "tracked_since": h.iso(job.created_at),
            "updated_at": h.iso(job.updated_at),
        }


JOB_COLUMNS = (
    Column("JOB", "right"),
    Column("USER"),
    Column("STATE"),
    Column("NODE"),
    Column("EVERY", "right"),
    Column("LAST OK", "right"),
    Column("AGE", "right"),
    Column("IMG", "right"),
    Column("SIZE", "right"),
    Column("RST", "right"),
    Column("NEXT", "right"),
    Column("PROBLEM", shrink=True),
)


def job_cells(view: JobView, now: datetime) -> list[str]:
    job = view.job
    return [
        str(job.slurm_job_id),
        job.user_name,
        job.state.value,
        job.batch_host or "-",
        h.duration(job.interval_seconds),
        h.recent_time(view.last_valid_at, now),
        h.age(view.last_valid_at, now),
        str(view.valid_count),
        h.size_short(view.valid_bytes) if view.valid_count else "-",
        str(job.restart_count),
        h.until(view.next_due(), now),
        view.problem() or "-",
    ]


def job_fields(view: JobView, now: datetime) -> list[tuple[str, str]]:
    job = view.job
    last = "-"
    if view.last_valid_at is not None:
        last = f"{h.full_time(view.last_valid_at)} ({h.age(view.last_valid_at, now)} ago)"
    due = view.next_due()
    a = view.activity
    failure = "-"
    if a is not None and a.last_error is not None:
        failure = (
            f"checkpoint {a.last_failed_seq} at {h.full_time(a.last_failed_at)}: {a.last_error}"
        )
    return [
        ("Job", f"{job.slurm_job_id} on cluster {job.cluster}"),
        ("User", f"{job.user_name} (uid {job.uid})"),
        ("State", job.state.value),
        ("Node", job.batch_host or "-"),
        ("Interval", h.duration(job.interval_seconds)),
        ("Last valid", last),
        ("Valid images", f"{view.valid_count} ({h.size(view.valid_bytes)})"),
        ("Restarts", str(job.restart_count)),
        ("Next due", "-" if due is None else f"{h.full_time(due)} ({h.until(due, now)})"),
        ("Uncheckpointable", job.uncheckpointable_reason or "no"),
        ("Last failure", failure),
        ("Tracked since", h.full_time(job.created_at)),
    ]


CHECKPOINT_COLUMNS = (
    Column("SEQ", "right"),
    Column("STATE"),
    Column("KIND"),
    Column("REQUESTED"),
    Column("TOOK", "right"),
    Column("SIZE", "right"),
    Column("FILES", "right"),
    Column("DUMP", "right"),
    Column("FREEZE", "right"),
    Column("RUN", "right"),
    Column("REASON", shrink=True),
)


def checkpoint_cells(c: CheckpointRecord) -> list[str]:
    took = None if c.completed_at is None else (c.completed_at - c.created_at).total_seconds()
    return [
        str(c.seq),
        c.state.value,
        c.kind.value,
        h.local_time(c.created_at),
        h.seconds_text(took),
        h.size_short(c.total_bytes),
        "-" if c.file_count is None else str(c.file_count),
        h.seconds_text(c.dump_seconds),
        h.seconds_text(c.freeze_seconds),
        str(c.job_restart_count),
        c.error or "-",
    ]


def checkpoint_json(c: CheckpointRecord) -> dict[str, Any]:
    return {
        "seq": c.seq,
        "state": c.state.value,
        "kind": c.kind.value,
        "requested_at": h.iso(c.created_at),
        "completed_at": h.iso(c.completed_at),
        "total_bytes": c.total_bytes,
        "file_count": c.file_count,
        "dump_seconds": c.dump_seconds,
        "freeze_seconds": c.freeze_seconds,
        "criu_version": c.criu_version,
        "manifest_checksum": c.manifest_checksum,
        "store_path": c.store_path,
        "run": c.job_restart_count,
        "error": c.error,
    }


EVENT_COLUMNS = (
    Column("TIME"),
    Column("EVENT"),
    Column("SEQ", "right"),
    Column("DETAIL", shrink=True),
)


def event_cells(e: EventRecord) -> list[str]:
    seq = "-" if e.checkpoint_seq is None else str(e.checkpoint_seq)
    return [h.full_time(e.created_at), e.kind.value, seq, e.detail or "-"]


def event_json(e: EventRecord) -> dict[str, Any]:
    return {
        "at": h.iso(e.created_at),
        "kind": e.kind.value,
        "seq": e.checkpoint_seq,
        "detail": e.detail,
    }


def action_json(a: ActionRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind.value,
        "cluster": a.cluster,
        "job_id": a.slurm_job_id,
        "node": a.node,
        "options": dict(a.options),
        "state": a.state.value,
        "detail": a.detail,
        "progress": a.progress,
        "requested_by": a.requested_by,
        "created_at": h.iso(a.created_at),
        "updated_at": h.iso(a.updated_at),
    }


def action_target(a: ActionRecord) -> str:
    if a.slurm_job_id is not None:
        return f"job {a.slurm_job_id}"
    if a.node is not None:
        return f"node {a.node}"
    return f"cluster {a.cluster}"


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())
