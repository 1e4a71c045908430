"""Workers' heartbeats: the dashboard shows the workers seen recently.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ds_workers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("endpoints", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ds_workers")),
    )
    op.create_index(op.f("ix_ds_workers_seen_at"), "ds_workers", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ds_workers_seen_at"), table_name="ds_workers")
    op.drop_table("ds_workers")
