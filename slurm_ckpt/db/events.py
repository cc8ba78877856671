"""Job events: requeues, restores and their outcomes, refusals; history, only ever added."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from slurm_ckpt.db.models import Event
from slurm_ckpt.db.records import EventRecord, from_row
from slurm_ckpt.db.rows import CatalogPart
from slurm_ckpt.db.states import EventKind


class Events(CatalogPart):
    """The `events` table: what happened to each job, newest first."""

    def record_event(
        self,
        job_id: int,
        kind: EventKind,
        now: datetime,
        *,
        detail: str = "",
        checkpoint_seq: int | None = None,
    ) -> EventRecord:
        """Add one event; CatalogConflict for an unknown job (the foreign key refuses it)."""
        row = Event(
            job_id=job_id, kind=kind, detail=detail, checkpoint_seq=checkpoint_seq, created_at=now
        )
        return self._add(row, EventRecord)

    def events(self, job_id: int, *, limit: int = 100) -> list[EventRecord]:
        """The job's newest events first."""
        with self.db.session() as session:
            rows = session.scalars(
                select(Event)
                .where(Event.job_id == job_id)
                .order_by(Event.created_at.desc(), Event.id.desc())
                .limit(limit)
            )
            return [from_row(EventRecord, row) for row in rows]

    def count_events(self, job_id: int, kind: EventKind, detail_prefix: str = "") -> int:
        """How many events of `kind` the job has whose detail starts with `detail_prefix`."""
        with self.db.session() as session:
            query = select(func.count(Event.id)).where(Event.job_id == job_id, Event.kind == kind)
            if detail_prefix:
                query = query.where(Event.detail.startswith(detail_prefix, autoescape=True))
            return int(session.scalar(query) or 0)
