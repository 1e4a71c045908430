"""Brokers for the broker behaviour suite, and the helpers its tests share.

RabbitMQ tests run in a vhost created for the test run (see ``conftest.py``), so closing
connections from the broker side touches no one else's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
import subprocess
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest

from durable_sessions.broker.base import Broker, Consumer, Delivery
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.model.records import OutboxRecord, new_id, utcnow
from durable_sessions.model.topology import EndpointTopology
from tests.services import in_ci

RABBITMQCTL = shlex.split(os.environ.get("DS_TEST_RABBITMQCTL", "rabbitmqctl"))
WAIT = 15.0
"""Longest wait for something the broker does in the background (reconnects, requeues)."""


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` is true: for broker state that no event announces."""
    async with asyncio.timeout(WAIT):
        # Polling: RabbitMQ reports queue depths and reconnections to no one.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@dataclass(frozen=True, slots=True)
class RabbitServer:
    """A reachable RabbitMQ, and the vhost the tests own (``None``: no broker control)."""

    url: str
    vhost: str | None

    async def ctl(self, *args: str) -> None:
        """Run a rabbitmqctl command, or skip (fail under CI) when there is no control."""
        if self.vhost is None:
            message = f"{shlex.join(RABBITMQCTL)} is not available to control RabbitMQ"
            if in_ci():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        process = await asyncio.create_subprocess_exec(
            *RABBITMQCTL, "-q", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, f"rabbitmqctl {args}: {stderr.decode()}"

    @property
    def user(self) -> str:
        return urlsplit(self.url).username or "guest"


class BrokerHarness(ABC):
    """What a behaviour test needs besides the port: connections, topologies, broker control."""

    quiet = 0.0
    """How long to watch for a delivery that should not come."""

    def __init__(self) -> None:
        self.connections: list[Broker] = []
        self.topologies: list[EndpointTopology] = []

    async def connect(self) -> Broker:
        """A new connection, closed at the end of the test."""
        connection = await self._connect()
        self.connections.append(connection)
        return connection

    def topology(self, **changes: Any) -> EndpointTopology:
        """An endpoint of a name no one else uses, deleted at the end of the test."""
        topology = EndpointTopology(f"t-{uuid.uuid4().hex[:16]}", **changes)
        self.topologies.append(topology)
        return topology

    async def close(self) -> None:
        """Close every connection of the test."""
        for connection in self.connections:
            await connection.close()

    @abstractmethod
    async def _connect(self) -> Broker: ...

    @abstractmethod
    async def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue``."""

    @abstractmethod
    async def drop_connections(self) -> None:
        """Close every connection from the broker side; clients reconnect."""

    @abstractmethod
    def outage(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep the broker unreachable for the duration of the block."""


class MemoryHarness(BrokerHarness):
    def __init__(self) -> None:
        super().__init__()
        self.node = MemoryNode()

    async def _connect(self) -> Broker:
        return self.node.connect()

    async def queue_depth(self, queue: str) -> int:
        return self.node.queue_depth(queue)

    async def drop_connections(self) -> None:
        self.node.drop_connections()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        with self.node.outage():
            yield


class RabbitHarness(BrokerHarness):
    quiet = 0.3  # deliveries cross a network and a queue process

    def __init__(self, server: RabbitServer) -> None:
        super().__init__()
        self.server = server

    async def _connect(self) -> Broker:
        return await RabbitBroker.connect(
            self.server.url, name=f"ds-test-{uuid.uuid4().hex[:8]}", reconnect_interval=0.2
        )

    async def queue_depth(self, queue: str) -> int:
        async with await aio_pika.connect(self.server.url) as connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.message_count or 0

    async def drop_connections(self) -> None:
        await self.server.ctl("close_all_connections", "-p", str(self.server.vhost), "test")

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        vhost, user = str(self.server.vhost), self.server.user
        # Without permissions on the vhost, reconnection attempts are refused.
        await self.server.ctl("clear_permissions", "-p", vhost, user)
        try:
            await self.server.ctl("close_all_connections", "-p", vhost, "outage")
            yield
        finally:
            await self.server.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    async def close(self) -> None:
        await super().close()
        if not self.topologies:
            return
        async with await aio_pika.connect(self.server.url) as connection:
            channel = await connection.channel()
            for topology in self.topologies:
                for spec in (*topology.queues, topology.dead_letter_queue):
                    await channel.queue_delete(spec.name)
                await channel.exchange_delete(topology.exchange)
                await channel.exchange_delete(topology.dead_letter_exchange)


def record(
    topology: EndpointTopology,
    routing_key: str = "session.0",
    body: bytes = b"{}",
    **changes: object,
) -> OutboxRecord:
    base = OutboxRecord(
        exchange=topology.exchange,
        routing_key=routing_key,
        body=body,
        created_at=utcnow(),
        message_id=new_id(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def numbered(topology: EndpointTopology, count: int, key: str = "session.0") -> list[OutboxRecord]:
    return [record(topology, key, f'{{"n": {n}}}'.encode()) for n in range(count)]


async def take(consumer: Consumer, count: int) -> list[Delivery]:
    """Exactly ``count`` deliveries, in arrival order (failing after a while)."""
    taken: list[Delivery] = []
    async with asyncio.timeout(WAIT):
        while len(taken) < count:
            taken += await consumer.next_batch(count - len(taken), 0.05)
    return taken


async def nothing_more(broker: BrokerHarness, consumer: Consumer) -> None:
    """No delivery arrives (RabbitMQ gets a moment to prove otherwise)."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(broker.quiet):
            await consumer.next_batch(1, 0)


async def expect_depth(broker: BrokerHarness, queue: str, depth: int) -> None:
    async def reached() -> bool:
        return await broker.queue_depth(queue) == depth

    await eventually(reached)


async def ready(broker: BrokerHarness, **changes: object) -> tuple[Broker, EndpointTopology]:
    connection = await broker.connect()
    topology = broker.topology(**changes)
    await connection.declare(topology)
    return connection, topology


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.body for d in deliveries]
