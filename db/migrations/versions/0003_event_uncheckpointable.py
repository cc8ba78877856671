"""Add the event kind `uncheckpointable`: a job the service will not checkpoint, and why.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A frozen snapshot like 0001: the constraint texts are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "kind IN ('requeued', 'restored', 'fell_back', 'fresh_start', 'restore_failed', "
    "'requeue_refused')"
)
AFTER = (
    "kind IN ('requeued', 'restored', 'fell_back', 'fresh_start', 'restore_failed', "
    "'requeue_refused', 'uncheckpointable')"
)


def _kinds(condition: str) -> None:
    # SQLite cannot alter a constraint; batch mode copies the table.
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(op.f("ck_events_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_events_kind"), condition)


def upgrade() -> None:
    _kinds(AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE kind = 'uncheckpointable'")
    _kinds(BEFORE)
