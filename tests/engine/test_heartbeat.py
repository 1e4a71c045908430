"""A worker's heartbeat: written while its runtime runs, renewed, removed when it stops."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.heartbeat import FORGET_AFTER, Heartbeat
from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import WorkerRecord
from durable_sessions.model.services import service_of
from durable_sessions.store.memory import MemoryStore

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def seen(store: MemoryStore) -> list[WorkerRecord]:
    async with store.snapshot() as uow:
        return await uow.workers.seen_since(T0 - FORGET_AFTER * 2)


async def test_a_runtime_beats_while_it_runs_and_forgets_its_row_when_it_stops() -> None:
    store = MemoryStore()
    spec = service_of(CalculatorService)
    runtime = Runtime(
        store, MemoryNode().connect(), [(Endpoint.for_service(spec), spec)], heartbeat_s=0.01
    )
    async with runtime:
        await asyncio.sleep(0.05)
        (worker,) = await seen(store)
        assert (worker.id, worker.pid, worker.endpoints) == (
            runtime.relay.owner,
            os.getpid(),
            ("calculator",),
        )
        await asyncio.sleep(0.05)
        (later,) = await seen(store)
        assert later.seen_at > worker.seen_at
        assert later.started_at == worker.started_at
    assert await seen(store) == []


async def test_a_beat_forgets_workers_not_seen_for_a_day() -> None:
    store = MemoryStore()
    gone = WorkerRecord("gone", "h", 1, (), T0, T0 - FORGET_AFTER - timedelta(seconds=1))
    async with store.transaction() as uow:
        await uow.workers.beat(gone)
    await Heartbeat(store, "w", ["calculator"], clock=lambda: T0).beat()
    assert [w.id for w in await seen(store)] == ["w"]
