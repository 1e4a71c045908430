"""Many stored sessions at once (labelled ``bulk=yes``), inserted straight into the tables with
SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from durable_sessions.model.records import new_id
from durable_sessions.store.sql import schema

CHUNK = 10_000


def _chunks(
    count: int, now: datetime
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    for start in range(0, count, CHUNK):
        ids = [new_id() for _ in range(min(CHUNK, count - start))]
        states = [
            {
                "id": sid,
                "contract": "Calculator",
                "endpoint": "bulk",
                "state": "open",
                "labels": {"bulk": "yes"},
                "last_applied_seq": 0,
                "applied_count": 0,
                "parked_count": 0,
                "duplicate_count": 0,
                "dead_count": 0,
                "instance_state": None,
                "inactivity_timeout_s": 86400.0,
                "ttl_s": None,
                "created_at": now,
                "last_activity_at": now,
                "updated_at": now,
                "ended_at": None,
                "expires_at": now + timedelta(days=1),
                "close_requested": False,
                "progress_at": None,
                "fault_seq": None,
                "fault_reason": None,
                "end_reason": None,
                "version": 1,
            }
            for sid in ids
        ]
        sends = [
            {
                "session_id": sid,
                "last_sent_seq": 0,
                "terminating_seq": None,
                "last_sent_at": None,
                "expires_at": None,
                "stall_check_at": None,
            }
            for sid in ids
        ]
        labels = [{"session_id": sid, "key": "bulk", "value": "yes"} for sid in ids]
        yield schema.sessions, states
        yield schema.session_sends, sends
        yield schema.session_labels, labels


def store_sessions(url: str, count: int, now: datetime) -> None:
    """Insert ``count`` open sessions into the SQLite database at ``sqlite:///<path>``."""
    engine = sa.create_engine(url, connect_args={"timeout": 60})
    try:
        with engine.begin() as db:
            for table, rows in _chunks(count, now):
                db.execute(sa.insert(table), rows)
    finally:
        engine.dispose()


async def store_sessions_async(db: AsyncConnection, count: int, now: datetime) -> None:
    """Insert ``count`` open sessions through an async connection (PostgreSQL)."""
    for table, rows in _chunks(count, now):
        await db.execute(sa.insert(table), rows)
