"""Add actions: admin requests the service carries out.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

A frozen snapshot like 0001: types and constraint texts are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
ENUM_TEXT = sa.String(length=16)


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", ENUM_TEXT, nullable=False),
        sa.Column("cluster", sa.String(length=64), nullable=False),
        sa.Column("slurm_job_id", sa.BigInteger(), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("state", ENUM_TEXT, nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.CheckConstraint(
            "kind IN ('checkpoint', 'requeue', 'drain', 'gc')", name=op.f("ck_actions_kind")
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'RUNNING', 'DONE', 'FAILED')", name=op.f("ck_actions_state")
        ),
        sa.CheckConstraint(
            "slurm_job_id IS NULL OR slurm_job_id > 0",
            name=op.f("ck_actions_slurm_job_id_positive"),
        ),
        sa.CheckConstraint(
            "kind NOT IN ('checkpoint', 'requeue') OR slurm_job_id IS NOT NULL",
            name=op.f("ck_actions_job_actions_name_a_job"),
        ),
        sa.CheckConstraint(
            "kind <> 'drain' OR node IS NOT NULL", name=op.f("ck_actions_drain_names_a_node")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
    )
    op.create_index(op.f("ix_actions_cluster_state"), "actions", ["cluster", "state"])


def downgrade() -> None:
    op.drop_index(op.f("ix_actions_cluster_state"), table_name="actions")
    op.drop_table("actions")
