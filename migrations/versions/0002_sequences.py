"""WS-RM sequences: source and destination state of reliable sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def _enum(name: str, *values: str, length: int = 24) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


def upgrade() -> None:
    op.create_table(
        "ds_sequences",
        sa.Column("identifier", sa.String(255), nullable=False),
        sa.Column("role", _enum("sequence_role", "source", "destination"), nullable=False),
        sa.Column(
            "rm_version",
            _enum(
                "rm_version",
                "http://schemas.xmlsoap.org/ws/2005/02/rm",
                "http://docs.oasis-open.org/ws-rx/wsrm/200702",
                length=64,
            ),
            nullable=False,
        ),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("state", JSON, nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.Column("create_message_id", sa.String(200), nullable=True),
        sa.Column("wake_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["ds_sessions.id"],
            name=op.f("fk_ds_sequences_session_id_ds_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_ds_sequences")),
    )
    op.create_index(op.f("ix_ds_sequences_session_id"), "ds_sequences", ["session_id"])
    op.create_index(
        op.f("ix_ds_sequences_endpoint_create_message_id"),
        "ds_sequences",
        ["endpoint", "create_message_id"],
    )
    op.create_index(
        op.f("ix_ds_sequences_endpoint_role_pending"),
        "ds_sequences",
        ["endpoint", "role", "pending"],
    )
    op.create_index(
        op.f("ix_ds_sequences_role_ended_wake_at"), "ds_sequences", ["role", "ended", "wake_at"]
    )


def downgrade() -> None:
    op.drop_table("ds_sequences")
