"""Stacks for the behaviour suites of whole services: the twins, SQLite + RabbitMQ, PostgreSQL +
RabbitMQ (the ``stack`` fixture of ``tests/conftest.py`` makes them)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

import aio_pika
import sqlalchemy as sa

from durable_sessions.broker.base import Broker
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.instancing import Throttles
from durable_sessions.engine.runtime import Runtime
from durable_sessions.model.endpoints import Endpoint, PoisonPolicy
from durable_sessions.model.records import utcnow
from durable_sessions.model.services import service_of
from durable_sessions.model.topology import EndpointTopology
from durable_sessions.store.base import Store
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.engine import create_engine
from tests.services import BROKER_URL


async def empty_postgres(url: str) -> None:
    """Empty every table of the migrated PostgreSQL database at ``url``."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            names = ", ".join(t.name for t in schema.Base.metadata.sorted_tables)
            await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


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
    connect: Callable[[], Awaitable[Broker]]
    node: MemoryNode | None = None
    """The memory broker's node, on the memory stack."""
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
        clock: Callable[[], datetime] = utcnow,
    ) -> Runtime:
        broker = await self.connect()
        self.exits.push_async_callback(broker.close)
        runtime = Runtime(
            self.store,
            broker,
            [(e, service_of(s)) for e, s in served],
            throttles=throttles,
            sweep_interval_s=interval_s,
            relay_poll_interval_s=interval_s,
            relay_lease_s=2.0,
            clock=clock,
        )
        if start:
            await runtime.start()
            self.runtimes.append(runtime)
        return runtime
