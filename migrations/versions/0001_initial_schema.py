"""Initial schema: sessions, session labels, messages, outbox, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=24)


def upgrade() -> None:
    op.create_table(
        "ds_sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("contract", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column(
            "state",
            _enum("session_state", "open", "closing", "closed", "faulted", "terminated", "expired"),
            nullable=False,
        ),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("last_sent_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_applied_seq", sa.BigInteger(), nullable=False),
        sa.Column("applied_count", sa.BigInteger(), nullable=False),
        sa.Column("parked_count", sa.BigInteger(), nullable=False),
        sa.Column("duplicate_count", sa.BigInteger(), nullable=False),
        sa.Column("dead_count", sa.BigInteger(), nullable=False),
        sa.Column("instance_state", JSON, nullable=True),
        sa.Column("inactivity_timeout_s", sa.Float(), nullable=False),
        sa.Column("ttl_s", sa.Float(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_activity_at", TIME, nullable=True),
        sa.Column("updated_at", TIME, nullable=True),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("close_requested", sa.Boolean(), nullable=False),
        sa.Column("terminating_seq", sa.BigInteger(), nullable=True),
        sa.Column("progress_at", TIME, nullable=True),
        sa.Column("stalled_at", TIME, nullable=True),
        sa.Column("fault_seq", sa.BigInteger(), nullable=True),
        sa.Column("fault_reason", sa.Text(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ds_sessions")),
    )
    op.create_index(op.f("ix_ds_sessions_state_id"), "ds_sessions", ["state", "id"])
    op.create_index(op.f("ix_ds_sessions_contract_id"), "ds_sessions", ["contract", "id"])
    op.create_index(op.f("ix_ds_sessions_expires_at"), "ds_sessions", ["expires_at"])
    op.create_index(op.f("ix_ds_sessions_stalled_at"), "ds_sessions", ["stalled_at"])

    op.create_table(
        "ds_session_labels",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["ds_sessions.id"],
            name=op.f("fk_ds_session_labels_session_id_ds_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "key", name=op.f("pk_ds_session_labels")),
    )
    op.create_index(
        op.f("ix_ds_session_labels_key_value_session_id"),
        "ds_session_labels",
        ["key", "value", "session_id"],
    )

    op.create_table(
        "ds_messages",
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("contract", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(200), nullable=False),
        sa.Column("args", JSON, nullable=False),
        sa.Column(
            "status",
            _enum("message_status", "pending", "parked", "applied", "failed", "dead"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=True),
        sa.Column("applied_at", TIME, nullable=True),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["ds_sessions.id"],
            name=op.f("fk_ds_messages_session_id_ds_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_ds_messages")),
        sa.UniqueConstraint("session_id", "seq", name=op.f("uq_ds_messages_session_id_seq")),
    )
    op.create_index(op.f("ix_ds_messages_next_attempt_at"), "ds_messages", ["next_attempt_at"])

    op.create_table(
        "ds_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("exchange", sa.String(255), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("claimed_until", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ds_outbox")),
    )

    op.create_table(
        "ds_dead_letters",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("contract", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(200), nullable=False),
        sa.Column("args", JSON, nullable=False),
        sa.Column(
            "reason",
            _enum(
                "dead_letter_reason",
                "poison",
                "rejected",
                "not_initiating",
                "session_not_open",
                "terminated",
                "expired",
                "skipped",
                "undeliverable",
            ),
            nullable=False,
        ),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("replayed_at", TIME, nullable=True),
        sa.Column("replay_message_id", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ds_dead_letters")),
    )
    op.create_index(op.f("ix_ds_dead_letters_message_id"), "ds_dead_letters", ["message_id"])
    op.create_index(op.f("ix_ds_dead_letters_session_id"), "ds_dead_letters", ["session_id"])
    op.create_index(op.f("ix_ds_dead_letters_reason"), "ds_dead_letters", ["reason"])


def downgrade() -> None:
    op.drop_table("ds_dead_letters")
    op.drop_table("ds_outbox")
    op.drop_table("ds_messages")
    op.drop_table("ds_session_labels")
    op.drop_table("ds_sessions")
