"""``run_in_memory``: each argument reaches the runtime it starts, and each run is fresh."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from durable_sessions import run_in_memory
from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples import Calculator, CalculatorService
from durable_sessions.hosting.testing import FAST_POISON
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import SessionRecord, utcnow
from durable_sessions.store.base import SessionQuery
from tests.api.test_api import Notes, NotesService

pytestmark = pytest.mark.timeout(30)


async def eventually(predicate: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def stored(runtime: Runtime, session_id: str) -> SessionRecord:
    async with runtime.store.snapshot() as uow:
        found = await uow.sessions.get(session_id)
    assert found is not None
    return found


async def test_it_serves_every_service_given() -> None:
    async with run_in_memory(CalculatorService, NotesService) as runtime:
        async with runtime.client.session(Calculator) as calc:
            await calc.clear()
            await calc.add_to(2)
            assert await calc.equals() == 2.0
        await runtime.client.datagrams(Notes).note("hello")
        async with runtime.store.snapshot() as uow:
            sessions = await uow.sessions.find(SessionQuery())
        assert [s.state for s in sessions] == [SessionState.CLOSED]


async def test_each_run_starts_from_an_empty_store_and_stops_its_runtime() -> None:
    async with run_in_memory(CalculatorService) as first, first.client.session(Calculator) as c:
        await c.clear()
    late = first.client.session(Calculator)
    await (await late.open()).clear()
    await asyncio.sleep(0.1)
    assert (await stored(first, late.id)).last_applied_seq == 0, "the runtime still applies"
    async with run_in_memory(CalculatorService) as second, second.store.snapshot() as uow:
        assert await uow.sessions.find(SessionQuery()) == []


async def test_the_poison_policy_given_is_the_one_applied() -> None:
    async with run_in_memory(CalculatorService, poison=FAST_POISON) as runtime:
        context = runtime.client.session(Calculator)
        calc = await context.open()
        await calc.clear()
        await calc.divide_by(0)

        async def faulted() -> bool:
            return (await stored(runtime, context.id)).state is SessionState.FAULTED

        await eventually(faulted)
        assert "ZeroDivisionError" in ((await stored(runtime, context.id)).fault_reason or "")


async def test_the_clock_given_drives_the_sweeper() -> None:
    now = utcnow()

    def clock() -> datetime:
        return now

    async with run_in_memory(CalculatorService, clock=clock, interval_s=0.01) as runtime:
        context = runtime.client.session(Calculator)
        calc = await context.open()
        await calc.clear()

        async def applied() -> bool:
            return (await stored(runtime, context.id)).last_applied_seq == 1

        await eventually(applied)
        await asyncio.sleep(0.05)
        assert (await stored(runtime, context.id)).state is SessionState.OPEN
        now += timedelta(minutes=11)

        async def expired() -> bool:
            return (await stored(runtime, context.id)).state is SessionState.EXPIRED

        await eventually(expired)
