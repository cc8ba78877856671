"""Create the catalog: jobs, checkpoints, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

A migration is a frozen snapshot: it spells out types and constraint texts
instead of importing them from the models, which will keep changing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
ENUM_TEXT = sa.String(length=16)
REQUESTED_ONLY = sa.text("state = 'REQUESTED'")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(length=64), nullable=False),
        sa.Column("slurm_job_id", sa.BigInteger(), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("state", ENUM_TEXT, nullable=False),
        sa.Column("batch_host", sa.String(length=255), nullable=True),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        sa.Column("uncheckpointable_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.CheckConstraint(
            "state IN ('PENDING', 'RUNNING', 'REQUEUED', 'COMPLETED', 'FAILED', 'CANCELLED')",
            name=op.f("ck_jobs_state"),
        ),
        sa.CheckConstraint("interval_seconds > 0", name=op.f("ck_jobs_interval_positive")),
        sa.CheckConstraint("restart_count >= 0", name=op.f("ck_jobs_restart_count_not_negative")),
        sa.CheckConstraint("slurm_job_id > 0", name=op.f("ck_jobs_slurm_job_id_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("cluster", "slurm_job_id", name=op.f("uq_jobs_cluster_slurm_job_id")),
    )
    op.create_index(op.f("ix_jobs_user_name"), "jobs", ["user_name"])

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", ENUM_TEXT, nullable=False),
        sa.Column("store_path", sa.Text(), nullable=True),
        sa.Column("total_bytes", sa.BigInteger(), nullable=True),
        sa.Column("file_count", sa.Integer(), nullable=True),
        sa.Column("dump_seconds", sa.Float(), nullable=True),
        sa.Column("freeze_seconds", sa.Float(), nullable=True),
        sa.Column("criu_version", sa.String(length=32), nullable=True),
        sa.Column("manifest_checksum", sa.String(length=160), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_restart_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("completed_at", UTC_TIME, nullable=True),
        sa.CheckConstraint(
            "state IN ('REQUESTED', 'VALID', 'FAILED', 'OBSOLETE', 'DELETED')",
            name=op.f("ck_checkpoints_state"),
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_checkpoints_seq_positive")),
        sa.CheckConstraint(
            "total_bytes IS NULL OR total_bytes >= 0",
            name=op.f("ck_checkpoints_total_bytes_not_negative"),
        ),
        sa.CheckConstraint(
            "file_count IS NULL OR file_count >= 0",
            name=op.f("ck_checkpoints_file_count_not_negative"),
        ),
        sa.CheckConstraint(
            "state = 'REQUESTED' OR completed_at IS NOT NULL",
            name=op.f("ck_checkpoints_completed_at_set"),
        ),
        sa.CheckConstraint(
            "state <> 'VALID' OR (store_path IS NOT NULL AND manifest_checksum IS NOT NULL "
            "AND total_bytes IS NOT NULL AND file_count IS NOT NULL)",
            name=op.f("ck_checkpoints_valid_is_complete"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_checkpoints_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("job_id", "seq", name=op.f("uq_checkpoints_job_id_seq")),
    )
    op.create_index(
        "uq_checkpoints_job_id_requested",
        "checkpoints",
        ["job_id"],
        unique=True,
        sqlite_where=REQUESTED_ONLY,
        postgresql_where=REQUESTED_ONLY,
    )
    op.create_index(
        op.f("ix_checkpoints_job_id_state_seq"), "checkpoints", ["job_id", "state", "seq"]
    )
    op.create_index(op.f("ix_checkpoints_state_created_at"), "checkpoints", ["state", "created_at"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", ENUM_TEXT, nullable=False),
        sa.Column("checkpoint_seq", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.CheckConstraint(
            "kind IN ('requeued', 'restored', 'fell_back', 'fresh_start', 'restore_failed', "
            "'requeue_refused')",
            name=op.f("ck_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_job_id_created_at"), "events", ["job_id", "created_at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("checkpoints")
    op.drop_table("jobs")
