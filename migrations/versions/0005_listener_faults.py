"""Faulted datagram listeners: ``ds_listener_faults``, one row per endpoint whose datagram queue
stopped at a poison message under ``receive_error_handling`` ``fault``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ds_listener_faults",
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("faulted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_ds_listener_faults")),
    )


def downgrade() -> None:
    op.drop_table("ds_listener_faults")
