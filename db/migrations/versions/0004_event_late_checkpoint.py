"""Add the event kind `late_checkpoint`: a result that came after its request's deadline.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The checkpoint, FAILED at its deadline, becomes VALID once its image verifies
(the event says so); a frozen snapshot like 0003.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "kind IN ('requeued', 'restored', 'fell_back', 'fresh_start', 'restore_failed', "
    "'requeue_refused', 'uncheckpointable')"
)
AFTER = (
    "kind IN ('requeued', 'restored', 'fell_back', 'fresh_start', 'restore_failed', "
    "'requeue_refused', 'uncheckpointable', 'late_checkpoint')"
)


def _kinds(condition: str) -> None:
    # SQLite cannot alter a constraint; batch mode copies the table.
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(op.f("ck_events_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_events_kind"), condition)


def upgrade() -> None:
    _kinds(AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE kind = 'late_checkpoint'")
    _kinds(BEFORE)
