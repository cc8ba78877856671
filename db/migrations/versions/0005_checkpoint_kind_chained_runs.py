"""Add checkpoints.kind (periodic, final, admin) and jobs.chained_runs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Existing rows get the server defaults: every older checkpoint counts as
periodic, every job as never chained. A frozen snapshot like 0001: types and
constraint texts are spelled out here.

Both columns are added and dropped in place (SQLite 3.35 or newer), each with
its CHECK inline, instead of in batch mode: batch mode copies a table and
drops the old one, and on SQLite with foreign keys on, dropping `jobs` deletes
every checkpoint and event through their ON DELETE CASCADE.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same text on SQLite and PostgreSQL; Alembic's add_column cannot render a CHECK inline.
ADD_KIND = (
    "ALTER TABLE checkpoints ADD COLUMN kind VARCHAR(16) DEFAULT 'periodic' NOT NULL "
    "CONSTRAINT ck_checkpoints_kind CHECK (kind IN ('periodic', 'final', 'admin'))"
)
ADD_CHAINED_RUNS = (
    "ALTER TABLE jobs ADD COLUMN chained_runs INTEGER DEFAULT 0 NOT NULL "
    "CONSTRAINT ck_jobs_chained_runs_not_negative CHECK (chained_runs >= 0)"
)
# Before this revision the runs chained so far were counted from the requeue events
# walltime chaining wrote; a job chained before the upgrade keeps its count.
COUNT_CHAINED_RUNS = (
    "UPDATE jobs SET chained_runs = (SELECT COUNT(*) FROM events "
    "WHERE events.job_id = jobs.id AND events.kind = 'requeued' "
    "AND events.detail LIKE 'walltime chaining, run %')"
)


def upgrade() -> None:
    op.execute(ADD_KIND)
    op.execute(ADD_CHAINED_RUNS)
    op.execute(COUNT_CHAINED_RUNS)


def downgrade() -> None:
    # A column's own CHECK goes with it, on both databases.
    op.drop_column("jobs", "chained_runs")
    op.drop_column("checkpoints", "kind")
