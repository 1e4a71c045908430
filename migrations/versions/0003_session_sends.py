"""A session's send side in a row of its own, so senders and appliers lock different rows.

``last_sent_seq`` and ``terminating_seq`` move from ``ds_sessions`` to ``ds_session_sends``,
with the time of the last send, the deadline counting it, and the time of the next stall check
(which replaces ``ds_sessions.stalled_at``: it was set exactly when messages waited).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)

# Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ and PostgreSQL): a batch migration would
# recreate ds_sessions, and dropping the old table cascades to every row that refers to it.


def upgrade() -> None:
    op.create_table(
        "ds_session_sends",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("last_sent_seq", sa.BigInteger(), nullable=False),
        sa.Column("terminating_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_sent_at", TIME, nullable=True),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("stall_check_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["ds_sessions.id"],
            name=op.f("fk_ds_session_sends_session_id_ds_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_ds_session_sends")),
    )
    op.create_index(
        op.f("ix_ds_session_sends_stall_check_at"), "ds_session_sends", ["stall_check_at"]
    )
    op.execute(
        "INSERT INTO ds_session_sends (session_id, last_sent_seq, terminating_seq, "
        "last_sent_at, expires_at, stall_check_at) "
        "SELECT id, last_sent_seq, terminating_seq, NULL, NULL, stalled_at FROM ds_sessions"
    )
    op.drop_index(op.f("ix_ds_sessions_stalled_at"), table_name="ds_sessions")
    for column in ("last_sent_seq", "terminating_seq", "stalled_at"):
        op.execute(f"ALTER TABLE ds_sessions DROP COLUMN {column}")


def downgrade() -> None:
    op.add_column(
        "ds_sessions",
        sa.Column("last_sent_seq", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("ds_sessions", sa.Column("terminating_seq", sa.BigInteger(), nullable=True))
    op.add_column("ds_sessions", sa.Column("stalled_at", TIME, nullable=True))
    sends = "FROM ds_session_sends d WHERE d.session_id = ds_sessions.id"
    op.execute(
        "UPDATE ds_sessions SET "
        f"last_sent_seq = COALESCE((SELECT d.last_sent_seq {sends}), 0), "
        f"terminating_seq = (SELECT d.terminating_seq {sends}), "
        f"stalled_at = (SELECT d.stall_check_at {sends}), "
        "expires_at = CASE WHEN expires_at IS NULL THEN NULL ELSE COALESCE("
        "(SELECT CASE WHEN d.expires_at > ds_sessions.expires_at THEN d.expires_at END "
        f"{sends}), expires_at) END"
    )
    op.create_index(op.f("ix_ds_sessions_stalled_at"), "ds_sessions", ["stalled_at"])
    op.drop_index(op.f("ix_ds_session_sends_stall_check_at"), table_name="ds_session_sends")
    op.drop_table("ds_session_sends")
