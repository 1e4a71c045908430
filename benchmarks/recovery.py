"""B5: how long sessions stall when the worker holding them is killed with ``kill -9``.

Two real worker processes serve the endpoint while the client keeps every session busy. The
sessions with messages sent but not applied are noted, one worker is killed, and the clock runs
until each of those sessions has applied its next message (the broker redelivers the dead
worker's unacked messages to the other; the database ended its transaction and locks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from pathlib import Path

import sqlalchemy as sa

from benchmarks.correctness import verify
from benchmarks.infrastructure import say
from benchmarks.results import Database, Result
from benchmarks.sessions import (
    Deployment,
    deployed,
    open_sessions,
    record,
    tallies,
    wait_applied,
)
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.store import SqlStore

PACE_S = 0.02
"""Pause between a session's sends, so the workers are busy but not swamped."""
RECOVERY_TIMEOUT_S = 60.0
POLL_S = 0.005


async def in_flight(store: SqlStore) -> dict[str, int]:
    """Sessions with messages sent but not applied, and how far each has applied."""
    t, sends = schema.sessions, schema.session_sends
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(t.c.id, t.c.last_applied_seq)
            .join(sends, sends.c.session_id == t.c.id)
            .where(t.c.last_applied_seq < sends.c.last_sent_seq)
        )
        return {session_id: int(applied) for session_id, applied in rows}


async def advanced(store: SqlStore, since: dict[str, int]) -> set[str]:
    """The sessions of ``since`` that have applied more since."""
    t = schema.sessions
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(t.c.id, t.c.last_applied_seq).where(t.c.id.in_(list(since)))
        )
        return {session_id for session_id, applied in rows if applied > since[session_id]}


async def _keep_sending(
    deployment: Deployment, session_ids: Collection[str], sent: dict[str, int], stop: asyncio.Event
) -> None:
    async def sender(session_id: str) -> None:
        while not stop.is_set():
            n = sent[session_id] + 1
            await deployment.client.send(record(deployment.endpoint, session_id, n))
            sent[session_id] = n
            await asyncio.sleep(PACE_S)

    await asyncio.gather(*(sender(s) for s in session_ids))


async def recovery(sessions: int, warm_up_s: float, logs: Path) -> Result:
    """B5 on PostgreSQL: seconds from ``kill -9`` to the next apply of every stalled session."""
    async with deployed(Database.POSTGRESQL, logs, workers=2) as deployment:
        store = deployment.store
        ids = await open_sessions(store, deployment.endpoint, sessions)
        sent = dict.fromkeys(ids, 0)
        stop = asyncio.Event()
        sending = asyncio.create_task(_keep_sending(deployment, ids, sent, stop))
        try:
            await asyncio.sleep(warm_up_s)
            held = await in_flight(store)
            while not held:
                await asyncio.sleep(POLL_S)
                held = await in_flight(store)
            deployment.workers[0].kill()
            killed_at = time.monotonic()
            waiting = set(held)
            while waiting:
                if time.monotonic() - killed_at > RECOVERY_TIMEOUT_S:
                    raise TimeoutError(f"{len(waiting)} sessions stalled after the kill")
                waiting -= await advanced(store, {s: held[s] for s in waiting})
                if waiting:
                    await asyncio.sleep(POLL_S)
            recovered_s = time.monotonic() - killed_at
        finally:
            stop.set()
            await sending
        await wait_applied(store, sum(sent.values()))
        verify("B5", sent, await tallies(store))
    say(
        f"  B5 postgresql: {len(held)} sessions in flight, "
        f"all applied again {recovered_s:.2f} s after kill -9"
    )
    return Result(
        "B5", {"recovery_s": recovered_s, "sessions_held": float(len(held))}, Database.POSTGRESQL
    )
