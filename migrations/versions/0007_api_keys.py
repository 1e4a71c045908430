"""API keys with roles (kept as digests), and the opener and token digest of each session.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("admin", "operator", "sender", "reader", "session")


def upgrade() -> None:
    op.create_table(
        "ds_api_keys",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column(
            "role",
            sa.Enum(*ROLES, name="key_role", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("contract", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ds_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_ds_api_keys_prefix")),
    )
    op.add_column("ds_sessions", sa.Column("opened_by", sa.String(64), nullable=True))
    op.add_column("ds_sessions", sa.Column("token_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch migration would recreate
    # ds_sessions, and dropping it would cascade to ds_session_sends.
    op.drop_column("ds_sessions", "token_digest")
    op.drop_column("ds_sessions", "opened_by")
    op.drop_table("ds_api_keys")
