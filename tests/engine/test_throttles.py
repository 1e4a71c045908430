"""WCF's service throttles hold per worker, under load: the calls, sessions and instances seen
at once never pass ``max_concurrent_calls``, ``max_concurrent_sessions`` and
``max_concurrent_instances``, and reach them; datagrams run at once unless one singleton serves
them one at a time."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest
from pydantic import BaseModel

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.instancing import CPUS, Throttles
from durable_sessions.engine.outbox import publish_after_commit
from durable_sessions.engine.runtime import Runtime
from durable_sessions.engine.sending import SendRequest, open_session, send_many
from durable_sessions.model.contracts import contract, operation
from durable_sessions.model.endpoints import Binding, Endpoint
from durable_sessions.model.records import MessageStatus, utcnow
from durable_sessions.model.services import (
    Concurrency,
    Instancing,
    ServiceSpec,
    service,
    service_of,
)
from durable_sessions.store.base import Store
from durable_sessions.store.memory import MemoryStore

SESSIONS = 24
"""Sessions (or datagrams) sent before the worker starts, so its first batch holds them all."""
LARGE = 10_000


class Gauge:
    """Calls in progress and the most seen at once; calls wait until ``target`` are in."""

    def __init__(self, target: int, patience_s: float = 2.0) -> None:
        self.target = target
        self.patience_s = patience_s
        self.calls: set[str] = set()
        self.peak = 0
        self.full = asyncio.Event()

    async def hold(self, name: str) -> None:
        self.calls.add(name)
        self.peak = max(self.peak, len(self.calls))
        if len(self.calls) >= self.target:
            self.full.set()
        try:
            async with asyncio.timeout(self.patience_s):  # a limit too low: a peak too low
                await self.full.wait()
            await asyncio.sleep(0.01)  # room for calls past the limit, if it let them in
        except TimeoutError:
            pass
        finally:
            self.calls.discard(name)


class Seen:
    gauge = Gauge(0)
    """What the handlers of the running test report to."""


@contract
class Work(Protocol):
    @operation
    async def step(self, name: str) -> None: ...


@service(Work)
class SessionWork(BaseModel):
    steps: int = 0

    async def step(self, name: str) -> None:
        await Seen.gauge.hold(name)
        self.steps += 1


@service(Work, instancing=Instancing.PER_CALL)
class CallWork:
    async def step(self, name: str) -> None:
        await Seen.gauge.hold(name)


@service(Work, instancing=Instancing.PER_CALL, concurrency=Concurrency.MULTIPLE)
class ParallelWork:
    async def step(self, name: str) -> None:
        await Seen.gauge.hold(name)


@service(Work, instancing=Instancing.SINGLE)
class SingleWork:
    async def step(self, name: str) -> None:
        await Seen.gauge.hold(name)


async def serve(
    spec: ServiceSpec,
    throttles: Throttles,
    target: int,
    *,
    endpoints: int = 1,
    datagrams: bool = False,
    steps: int = 2,
    patience_s: float = 2.0,
    store: Store | None = None,
) -> Gauge:
    """Send ``SESSIONS`` sessions of ``steps`` steps (or datagrams) to each of ``endpoints``
    endpoints of ``spec``, then serve them all in one worker; return what it saw."""
    Seen.gauge = Gauge(target, patience_s)
    store, node = store or MemoryStore(), MemoryNode()
    binding = Binding.DATAGRAM if datagrams else None
    served = [
        (Endpoint.for_service(spec, name=f"work-{n}", binding=binding), spec)
        for n in range(endpoints)
    ]
    broker = node.connect()
    now = utcnow()
    requests: list[SendRequest] = []
    async with publish_after_commit(store, None, now) as tx:
        for endpoint, _ in served:
            await broker.declare(endpoint.topology)
            for s in range(SESSIONS):
                if datagrams:
                    requests.append(SendRequest(endpoint, None, "step", {"name": f"{s}"}))
                    continue
                session = await open_session(
                    tx.uow, endpoint, now, inactivity_timeout_s=600, ttl_s=None
                )
                requests += [
                    SendRequest(endpoint, session.id, "step", {"name": session.id})
                    for _ in range(steps)
                ]
        sent = await send_many(tx, requests, now)
    assert all(await broker.publish(tx.published))
    runtime = Runtime(store, node.connect(), served, throttles=throttles, sweep_interval_s=0.05)
    async with runtime, asyncio.timeout(30):
        for one in sent:
            applied = await runtime.client.wait(one.message.message_id)
            assert applied.status is MessageStatus.APPLIED
    return Seen.gauge


def limits(**given: int) -> Throttles:
    """Every throttle large but those ``given``."""
    base = {
        "max_concurrent_calls": LARGE,
        "max_concurrent_sessions": LARGE,
        "max_concurrent_instances": LARGE,
    }
    return Throttles(**{**base, **given})  # type: ignore[arg-type]


# On PostgreSQL the two endpoints' batches run at once; the memory store and SQLite take one
# writer at a time.


async def test_max_concurrent_calls_holds_across_the_endpoints_of_a_worker(store: Store) -> None:
    throttles = limits(max_concurrent_calls=5)
    seen = await serve(service_of(SessionWork), throttles, 5, endpoints=2, store=store)
    assert seen.peak == 5


async def test_max_concurrent_sessions_holds_across_the_endpoints_of_a_worker(
    store: Store,
) -> None:
    throttles = limits(max_concurrent_sessions=7)
    seen = await serve(service_of(SessionWork), throttles, 7, endpoints=2, store=store)
    assert seen.peak == 7


async def test_max_concurrent_instances_holds_for_session_instances() -> None:
    seen = await serve(service_of(SessionWork), limits(max_concurrent_instances=6), 6)
    assert seen.peak == 6


async def test_max_concurrent_instances_holds_for_per_call_instances() -> None:
    throttles = limits(max_concurrent_instances=4)
    seen = await serve(service_of(CallWork), throttles, 4, endpoints=2, datagrams=True)
    assert seen.peak == 4


async def test_multiple_concurrency_runs_datagrams_at_once() -> None:
    seen = await serve(service_of(ParallelWork), limits(), SESSIONS, datagrams=True)
    assert seen.peak == SESSIONS


async def test_per_call_datagrams_run_at_once_whatever_the_concurrency_mode() -> None:
    # WCF: with PerCall, ConcurrencyMode does not matter, as no two calls share an instance.
    seen = await serve(service_of(CallWork), limits(), SESSIONS, datagrams=True)
    assert seen.peak == SESSIONS


async def test_a_single_instance_takes_one_call_at_a_time_from_sessions_and_datagrams() -> None:
    single = service_of(SingleWork)
    assert (await serve(single, limits(), 2, steps=1, patience_s=0.01)).peak == 1
    assert (await serve(single, limits(), 2, datagrams=True, patience_s=0.01)).peak == 1


def test_the_defaults_are_wcfs() -> None:
    throttles = Throttles()
    assert (throttles.max_concurrent_calls, throttles.max_concurrent_sessions) == (
        16 * CPUS,
        100 * CPUS,
    )
    assert throttles.instances == 116 * CPUS
    assert Throttles(max_concurrent_calls=3, max_concurrent_sessions=4).instances == 7


@pytest.mark.parametrize("limit", [0, -1])
def test_a_throttle_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match="Throttle limit must be greater than zero"):
        Throttles(max_concurrent_instances=limit)
