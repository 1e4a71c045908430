"""The broker port: publish with confirms, consume with manual settlement.

Two implementations enforce the same rules (one behaviour suite runs against both):
:class:`~durable_sessions.broker.rabbitmq.RabbitBroker` and its twin for tests,
:class:`~durable_sessions.broker.memory.MemoryBroker`. The rules:

- Every message is persistent and published with ``mandatory``: a message no queue takes is
  reported as not confirmed, never silently dropped.
- The default exchange (``""``) routes a message to the queue its routing key names; queues of
  their own (``declare_queue``) are reached that way.
- ``publish`` reports per message whether the broker confirmed it; a lost connection raises
  :class:`~durable_sessions.errors.BrokerUnavailable`.
- A delivery stays unsettled until acked or rejected. Closing a consumer, or losing its
  connection, puts unsettled deliveries back in their queue with ``redelivered`` set and the
  delivery count raised; past the queue's delivery limit they go to the dead-letter exchange.
- ``reject`` sends a delivery to the dead-letter exchange (never back to its queue).
- Settling a delivery whose channel is gone does nothing: the broker redelivers it anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from durable_sessions.errors import ConfigurationError
from durable_sessions.model.records import OutboxRecord
from durable_sessions.model.topology import EndpointTopology

DELIVERY_COUNT_HEADER = "x-delivery-count"
"""The header RabbitMQ adds to redeliveries from a quorum queue: deliveries before this one."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to a consumer, not settled yet."""

    body: bytes
    headers: Mapping[str, Any]
    routing_key: str
    queue: str
    redelivered: bool
    delivery_count: int
    """How many times the broker delivered this message before (0 on the first delivery)."""
    message_id: str | None = None
    tag: Any = field(default=None, compare=False, repr=False)
    """The implementation's handle for settling this delivery."""


class Consumer(ABC):
    """Deliveries from some queues, collected in batches and settled by the caller."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._stopped = False

    def _deliver(self, delivery: Delivery) -> None:
        """Called by the implementation for each incoming delivery."""
        self._inbox.put_nowait(delivery)

    def _stop(self) -> None:
        """Called by the implementation when no more deliveries will come."""
        if not self._stopped:
            self._stopped = True
            self._inbox.put_nowait(None)

    async def next_batch(self, max_size: int, max_wait: float) -> list[Delivery]:
        """The deliveries waiting; when none is, wait for one, then more for ``max_wait`` s.

        What arrived while the caller was busy is a batch already, handed out at once: waiting
        for a fuller one only pays when deliveries trickle in. Returns at most ``max_size``
        deliveries, and an empty list once the consumer stops.
        """
        if self._stopped and self._inbox.empty():
            return []
        idle = self._inbox.empty()
        first = await self._inbox.get()
        if first is None:
            return []
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (max_wait if idle else 0.0)
        while len(batch) < max_size:
            try:
                item = self._inbox.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
                    async with asyncio.timeout(remaining):
                        item = await self._inbox.get()
                except TimeoutError:
                    break
            if item is None:
                self._inbox.put_nowait(None)
                break
            batch.append(item)
        return batch

    def drain_unstarted(self) -> list[Delivery]:
        """Take the deliveries received but not handed out yet (to leave them unsettled)."""
        taken: list[Delivery] = []
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                item = self._inbox.get_nowait()
                if item is None:
                    self._inbox.put_nowait(None)
                    break
                taken.append(item)
        return taken

    @abstractmethod
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries as done; the broker forgets them."""

    @abstractmethod
    async def reject(self, deliveries: Sequence[Delivery]) -> None:
        """Send deliveries to the dead-letter exchange."""

    @abstractmethod
    async def close(self) -> None:
        """Stop consuming; unsettled deliveries return to their queues."""


class Broker(ABC):
    """A connection to the message broker: declare topology, publish, consume."""

    @abstractmethod
    async def declare(self, topology: EndpointTopology) -> None:
        """Declare an endpoint's exchanges and queues (idempotent)."""

    @abstractmethod
    async def declare_queue(self, name: str) -> None:
        """Declare a durable quorum queue bound to no exchange but the default (idempotent)."""

    @abstractmethod
    async def delete_queue(self, name: str) -> None:
        """Delete queue ``name`` with the messages it holds; nothing if there is no such queue."""

    @abstractmethod
    async def publish(self, messages: Sequence[OutboxRecord]) -> list[bool]:
        """Publish persistently; for each message, True once the broker confirmed it."""

    @abstractmethod
    async def consume(self, queues: Sequence[str], prefetch: int) -> Consumer:
        """Start consuming ``queues`` with at most ``prefetch`` unsettled deliveries each."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~durable_sessions.errors.BrokerUnavailable` unless connected."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection."""


def check_consume_arguments(queues: Sequence[str], prefetch: int) -> None:
    """Refuse a consumer of no queue, or without a prefetch limit."""
    if not queues:
        raise ConfigurationError("consume needs at least one queue")
    if prefetch < 1:
        raise ConfigurationError(f"prefetch must be at least 1, not {prefetch}")
