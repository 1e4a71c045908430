"""The store's PostgreSQL connections: a lost one costs a reconnect; plans follow table growth."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from durable_sessions.store.sql import engine as sql_engine
from durable_sessions.store.sql.store import SqlStore

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


async def test_a_statement_prepared_on_a_small_table_uses_its_index_once_it_grew(
    postgres_url: str,
) -> None:
    store = SqlStore.from_url(postgres_url)
    run = "EXECUTE lookup('{a1}')"
    try:
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for sql in [
                "CREATE TEMP TABLE grows (id text PRIMARY KEY, pad text)",
                "INSERT INTO grows VALUES ('a1', 'x'), ('a2', 'x'), ('a3', 'x')",
                "VACUUM grows",  # as autovacuum does to a small, busy table
                "PREPARE lookup(text[]) AS SELECT * FROM grows WHERE id = ANY($1)",
                *[run] * 8,  # by default, enough runs for a generic plan to be kept
                "INSERT INTO grows SELECT 'k' || n, repeat('x', 200) "
                "FROM generate_series(1, 20000) AS n",
            ]:
                await conn.execute(sa.text(sql))
            plan = "\n".join(await conn.scalars(sa.text("EXPLAIN EXECUTE lookup('{k7,k9}')")))
        assert "Index" in plan, plan
        assert "Seq Scan" not in plan, plan
    finally:
        await store.close()
