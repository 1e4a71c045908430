"""PostgreSQL connections lost while idle in the pool cost a reconnect, not an error."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from durable_sessions.sql import engine as sql_engine
from durable_sessions.sql.store import SqlStore

pytestmark = pytest.mark.postgres


async def _backend_pids(store: SqlStore, count: int) -> set[int]:
    """Check out ``count`` connections at once, so the pool keeps them all; their server pids."""
    conns = [await store.engine.connect() for _ in range(count)]
    try:
        return {await c.scalar(sa.text("SELECT pg_backend_pid()")) for c in conns}
    finally:
        for c in conns:
            await c.close()


async def test_connections_killed_while_idle_are_replaced_before_use(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_engine, "CHECK_IDLE_AFTER_S", 0.05)
    store = SqlStore.from_url(postgres_url)
    killer = SqlStore.from_url(postgres_url)
    try:
        pids = await _backend_pids(store, 3)
        async with killer.engine.connect() as conn:
            for pid in pids:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.1)

        for _ in range(len(pids)):
            async with store.snapshot() as uow:
                assert await uow.sessions.get("no-such-session") is None
        assert not pids & await _backend_pids(store, 3)
    finally:
        await killer.close()
        await store.close()
