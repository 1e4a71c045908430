"""The nonces of signed messages seen per session (the security session's replay cache).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ds_session_nonces",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("t", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "nonce", name=op.f("pk_ds_session_nonces")),
    )


def downgrade() -> None:
    op.drop_table("ds_session_nonces")
