"""Stacks for the bindings behaviour suite: the twins, SQLite + RabbitMQ, PostgreSQL + RabbitMQ."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import aio_pika
import pytest

from durable_sessions.dispatcher import Throttles
from durable_sessions.endpoints import Endpoint, PoisonPolicy
from durable_sessions.memory import MemoryStore
from durable_sessions.memory_broker import MemoryBroker
from durable_sessions.rabbitmq import RabbitTransport
from durable_sessions.runtime import Runtime
from durable_sessions.services import service_of
from durable_sessions.sql.store import SqlStore
from durable_sessions.store import Store
from durable_sessions.topology import EndpointTopology
from durable_sessions.transport import Transport
from tests.conftest import _empty_postgres
from tests.services import BROKER_URL, require


async def delete_topology(topology: EndpointTopology) -> None:
    """Remove an endpoint's queues and exchanges from RabbitMQ."""
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        for queue in (*topology.queues, topology.dead_letter_queue):
            await channel.queue_delete(queue.name)
        await channel.exchange_delete(topology.exchange)
        await channel.exchange_delete(topology.dead_letter_exchange)


@dataclass
class Stack:
    """A store and a way to connect to a broker, with unique endpoint names per test."""

    kind: str
    store: Store
    connect: Callable[[], Awaitable[Transport]]
    broker: MemoryBroker | None = None
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    runtimes: list[Runtime] = field(default_factory=list)
    topologies: list[EndpointTopology] = field(default_factory=list)
    exits: AsyncExitStack = field(default_factory=AsyncExitStack)

    def endpoint(self, service: type, poison: PoisonPolicy | None = None, **kw: object) -> Endpoint:
        spec = service_of(service)
        base = Endpoint.for_service(spec, poison=poison, **kw)  # type: ignore[arg-type]
        endpoint = Endpoint.for_service(
            spec,
            name=f"{base.name}-{self.suffix}",
            poison=poison,
            **kw,  # type: ignore[arg-type]
        )
        self.topologies.append(endpoint.topology)
        return endpoint

    async def runtime(
        self,
        served: Sequence[tuple[Endpoint, type]],
        *,
        start: bool = True,
        throttles: Throttles | None = None,
        interval_s: float = 0.05,
    ) -> Runtime:
        transport = await self.connect()
        self.exits.push_async_callback(transport.close)
        runtime = Runtime(
            self.store,
            transport,
            [(e, service_of(s)) for e, s in served],
            throttles=throttles,
            sweep_interval_s=interval_s,
            relay_poll_interval_s=interval_s,
            relay_lease_s=2.0,
        )
        if start:
            await runtime.start()
            self.runtimes.append(runtime)
        return runtime


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("sqlite", marks=pytest.mark.rabbitmq),
        pytest.param("postgres", marks=[pytest.mark.rabbitmq, pytest.mark.postgres]),
    ]
)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The same behaviour on the twins and on the real services."""
    if request.param == "memory":
        broker = MemoryBroker()

        async def connect_memory() -> Transport:
            return broker.connect()

        made = Stack("memory", MemoryStore(), connect_memory, broker)
    else:
        require("RabbitMQ", BROKER_URL, 5672)
        if request.param == "sqlite":
            url = request.getfixturevalue("sqlite_url")
        else:
            url = request.getfixturevalue("postgres_url")
            await _empty_postgres(url)
        store = SqlStore.from_url(url)

        async def connect_rabbit() -> Transport:
            return await RabbitTransport.connect(BROKER_URL)

        made = Stack(request.param, store, connect_rabbit)
    try:
        yield made
    finally:
        for runtime in made.runtimes:
            await runtime.stop()
        await made.exits.aclose()
        if made.kind != "memory":
            for topology in made.topologies:
                await delete_topology(topology)
        await made.store.close()
