"""Pending messages wait for the service until the time to live ends, not the inactivity timeout.

``ds_session_sends.expires_at`` becomes the end of the session's time to live (a send leaves a
message pending, and pending messages wait that long), and ``ds_sessions.expires_at`` the
session's deadline as its state knows it: the end of the time to live while messages are
pending, else the inactivity timeout counted from the last activity or send. Downgrading puts
back the deadline of the last send.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
FINAL = ("closed", "terminated", "expired")
BATCH = 1000
Row = sa.Row[Any]
Deadlines = tuple[datetime | None, datetime | None]
"""A session's deadline as its state stores it, and as its send side does."""

_sessions = sa.table(
    "ds_sessions",
    sa.column("id", sa.String),
    sa.column("state", sa.String),
    sa.column("last_applied_seq", sa.BigInteger),
    sa.column("inactivity_timeout_s", sa.Float),
    sa.column("ttl_s", sa.Float),
    sa.column("created_at", TIME),
    sa.column("last_activity_at", TIME),
    sa.column("expires_at", TIME),
)
_sends = sa.table(
    "ds_session_sends",
    sa.column("session_id", sa.String),
    sa.column("last_sent_seq", sa.BigInteger),
    sa.column("last_sent_at", TIME),
    sa.column("expires_at", TIME),
)


def _ends_at(row: Row) -> datetime | None:
    return None if row.ttl_s is None else row.created_at + timedelta(seconds=row.ttl_s)


def _idle_deadline(row: Row, since: datetime) -> datetime:
    deadline = since + timedelta(seconds=row.inactivity_timeout_s)
    ends_at = _ends_at(row)
    return deadline if ends_at is None else min(deadline, ends_at)


def _rewrite(deadlines: Callable[[Row], Deadlines]) -> None:
    """Rewrite both deadlines of every session, in batches, as ``deadlines(row)`` gives them."""
    bind = op.get_bind()
    query = (
        sa.select(_sessions, _sends.c.last_sent_seq, _sends.c.last_sent_at)
        .join(_sends, _sends.c.session_id == _sessions.c.id)
        .order_by(_sessions.c.id)
        .limit(BATCH)
    )
    after = ""
    while rows := bind.execute(query.where(_sessions.c.id > after)).all():
        states, sends = [], []
        for row in rows:
            state_deadline, sends_deadline = deadlines(row)
            states.append({"b_id": row.id, "b_expires_at": state_deadline})
            sends.append({"b_id": row.id, "b_expires_at": sends_deadline})
        bind.execute(
            _sessions.update()
            .where(_sessions.c.id == sa.bindparam("b_id"))
            .values(expires_at=sa.bindparam("b_expires_at")),
            states,
        )
        bind.execute(
            _sends.update()
            .where(_sends.c.session_id == sa.bindparam("b_id"))
            .values(expires_at=sa.bindparam("b_expires_at")),
            sends,
        )
        after = rows[-1].id


def _new(row: Row) -> Deadlines:
    if row.state in FINAL:
        state_deadline = None
    elif row.state == "faulted" or row.last_sent_seq > row.last_applied_seq:
        state_deadline = _ends_at(row)
    else:
        times = [t for t in (row.last_activity_at, row.last_sent_at) if t is not None]
        state_deadline = _idle_deadline(row, max(times, default=row.created_at))
    return state_deadline, _ends_at(row)


def _old(row: Row) -> Deadlines:
    if row.state in FINAL:
        state_deadline = None
    elif row.state == "faulted":
        state_deadline = _ends_at(row)
    else:
        state_deadline = _idle_deadline(row, row.last_activity_at or row.created_at)
    sent_at = row.last_sent_at
    return state_deadline, None if sent_at is None else _idle_deadline(row, sent_at)


def upgrade() -> None:
    _rewrite(_new)


def downgrade() -> None:
    _rewrite(_old)
