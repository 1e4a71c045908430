"""The in-memory broker: RabbitMQ's twin for tests, enforcing the rules of the broker port.

One :class:`MemoryNode` holds exchanges, bindings and queues, as a RabbitMQ node does; each
:meth:`MemoryNode.connect` gives a :class:`MemoryBroker`, the equivalent of one AMQP connection.
It behaves as the RabbitMQ adapter does on a quorum queue: mandatory routing (unroutable is not
confirmed), FIFO queues, per-consumer prefetch, round-robin between consumers, manual
settlement, dead-lettering on reject and past the delivery limit (with the ``x-first-death-*``
headers), the ``x-delivery-count`` header on redeliveries, and after a lost connection,
unsettled messages back at the head of their queue while consumers resume by themselves.

Test helpers: :meth:`~MemoryNode.queue_depth`, :meth:`~MemoryNode.unsettled_count`,
:meth:`~MemoryNode.publish_raw` (to inject duplicates or reorder),
:meth:`~MemoryNode.drop_connections` (a broker restart) and :meth:`~MemoryNode.outage`.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from durable_sessions.broker.base import (
    DELIVERY_COUNT_HEADER,
    Broker,
    Consumer,
    Delivery,
    check_consume_arguments,
)
from durable_sessions.errors import BrokerError, BrokerUnavailable, ConfigurationError
from durable_sessions.model.records import OutboxRecord
from durable_sessions.model.topology import DEAD_KEY, EndpointTopology


@dataclass(frozen=True, slots=True)
class _QueueArguments:
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    delivery_limit: int | None = None


@dataclass(slots=True, eq=False)
class _Message:
    body: bytes
    headers: dict[str, Any]
    exchange: str
    routing_key: str
    message_id: str
    position: int
    """Order of arrival in its queue; a returned message goes back to this place."""
    delivery_count: int = 0
    redelivered: bool = False


@dataclass(slots=True, eq=False)
class _Subscription:
    consumer: MemoryConsumer
    queue: _Queue
    prefetch: int
    unsettled: dict[int, _Message] = field(default_factory=dict)

    @property
    def has_room(self) -> bool:
        return len(self.unsettled) < self.prefetch


@dataclass(slots=True, eq=False)
class _Queue:
    name: str
    arguments: _QueueArguments
    ready: deque[_Message] = field(default_factory=deque)
    subscriptions: list[_Subscription] = field(default_factory=list)
    turn: int = 0

    def next_subscription(self) -> _Subscription | None:
        """The next consumer in round-robin order with room under its prefetch."""
        count = len(self.subscriptions)
        for step in range(count):
            index = (self.turn + step) % count
            if self.subscriptions[index].has_room:
                self.turn = (index + 1) % count
                return self.subscriptions[index]
        return None


@dataclass(frozen=True, slots=True)
class _Tag:
    subscription: _Subscription
    number: int


class MemoryNode:
    """Exchanges, bindings and queues in memory, shared by the connections it gives."""

    def __init__(self) -> None:
        self._bindings: dict[str, dict[str, list[str]]] = {}
        self._queues: dict[str, _Queue] = {}
        self._counter = itertools.count(1)
        self._down = False

    def connect(self) -> MemoryBroker:
        """A new connection to this node."""
        return MemoryBroker(self)

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` (not counting those delivered and unsettled)."""
        return len(self._queue(queue).ready)

    def unsettled_count(self, queue: str) -> int:
        """Messages of ``queue`` delivered to consumers and not settled yet."""
        return sum(len(s.unsettled) for s in self._queue(queue).subscriptions)

    def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        *,
        message_id: str | None = None,
    ) -> bool:
        """Route a message as if some client published it; False when no queue takes it."""
        return self._route(exchange, routing_key, body, dict(headers or {}), message_id)

    def drop_connections(self) -> None:
        """Simulate a broker restart: every unsettled delivery goes back to its queue.

        Consumers resume by themselves, as the RabbitMQ adapter's do after it reconnects;
        settling a delivery made before the drop does nothing.
        """
        with self.outage():
            pass

    @contextmanager
    def outage(self) -> Iterator[None]:
        """The broker is unreachable inside the block: connections drop, calls raise.

        ``publish``, ``declare``, ``consume`` and ``ping`` raise
        :class:`~durable_sessions.errors.BrokerUnavailable`; consumers receive nothing until
        the block ends, then get the requeued messages again.
        """
        self._down = True
        for queue in self._queues.values():
            for subscription in queue.subscriptions:
                self._return_unsettled(subscription)
        try:
            yield
        finally:
            self._down = False
            for queue in list(self._queues.values()):
                self._dispatch(queue)

    # --- used by MemoryBroker and MemoryConsumer --------------------------------------

    def _check_up(self) -> None:
        if self._down:
            raise BrokerUnavailable("the memory broker is unreachable (outage)")

    def _queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise BrokerError(
                f"queue {name!r} does not exist: declare its endpoint first"
            ) from None

    def _declare(self, topology: EndpointTopology) -> None:
        dlx = topology.dead_letter_exchange
        self._bindings.setdefault(topology.exchange, {})
        self._bindings.setdefault(dlx, {})
        for spec in topology.queues:
            arguments = (
                _QueueArguments(dlx, DEAD_KEY, topology.delivery_limit)
                if spec.dead_lettered
                else _QueueArguments()
            )
            self._declare_queue(spec.name, arguments)
            self._bind(topology.exchange, spec.routing_key, spec.name)
        self._declare_queue(topology.dead_letter_queue.name, _QueueArguments())
        self._bind(dlx, DEAD_KEY, topology.dead_letter_queue.name)

    def _declare_queue(self, name: str, arguments: _QueueArguments) -> None:
        existing = self._queues.get(name)
        if existing is None:
            self._queues[name] = _Queue(name, arguments)
        elif existing.arguments != arguments:
            raise BrokerError(
                f"queue {name!r} already exists with different arguments "
                f"({existing.arguments} instead of {arguments}). Queue arguments cannot change "
                "in place: drain and delete the queue, or declare the endpoint with the "
                "settings it was created with (such as its delivery limit)"
            )

    def _delete_queue(self, name: str) -> None:
        queue = self._queues.pop(name, None)
        if queue is None:
            return
        for routes in self._bindings.values():
            for bound in routes.values():
                if name in bound:
                    bound.remove(name)

    def _bind(self, exchange: str, routing_key: str, queue: str) -> None:
        bound = self._bindings[exchange].setdefault(routing_key, [])
        if queue not in bound:
            bound.append(queue)

    def _route(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: dict[str, Any],
        message_id: str | None,
    ) -> bool:
        if exchange == "":
            targets = [routing_key] if routing_key in self._queues else []
        else:
            targets = self._bindings.get(exchange, {}).get(routing_key, [])
        for name in targets:
            queue = self._queues[name]
            message = _Message(
                body,
                dict(headers),
                exchange,
                routing_key,
                message_id or uuid.uuid4().hex,
                next(self._counter),
            )
            queue.ready.append(message)
            self._dispatch(queue)
        return bool(targets)

    def _subscribe(self, consumer: MemoryConsumer, queues: Sequence[str], prefetch: int) -> None:
        found = [self._queue(name) for name in queues]
        for queue in found:
            subscription = _Subscription(consumer, queue, prefetch)
            consumer._subscriptions.append(subscription)
            queue.subscriptions.append(subscription)
        for queue in found:
            self._dispatch(queue)

    def _unsubscribe(self, subscription: _Subscription) -> None:
        queue = subscription.queue
        queue.subscriptions.remove(subscription)
        queue.turn = 0
        self._return_unsettled(subscription)
        self._dispatch(queue)

    def _settle(
        self, consumer: MemoryConsumer, deliveries: Sequence[Delivery], *, dead_letter: bool
    ) -> None:
        touched: dict[str, _Queue] = {}
        for delivery in deliveries:
            tag = delivery.tag
            if not isinstance(tag, _Tag) or tag.subscription.consumer is not consumer:
                raise ConfigurationError(f"not a delivery of this consumer: {delivery!r}")
            message = tag.subscription.unsettled.pop(tag.number, None)
            if message is None:
                continue  # settled already, or returned when its connection dropped
            queue = tag.subscription.queue
            if dead_letter:
                self._dead_letter(queue, message, "rejected")
            touched[queue.name] = queue
        for queue in touched.values():
            self._dispatch(queue)

    def _return_unsettled(self, subscription: _Subscription) -> None:
        queue = subscription.queue
        returned: list[_Message] = []
        for message in subscription.unsettled.values():
            message.delivery_count += 1
            message.redelivered = True
            limit = queue.arguments.delivery_limit
            if limit is not None and message.delivery_count > limit:
                self._dead_letter(queue, message, "delivery_limit")
            else:
                returned.append(message)
        subscription.unsettled.clear()
        # Back to their places, near the head, as a quorum queue with a delivery limit does.
        returned.sort(key=lambda m: m.position)
        merged = heapq.merge(returned, queue.ready, key=lambda m: m.position)
        queue.ready = deque(merged)

    def _dead_letter(self, queue: _Queue, message: _Message, reason: str) -> None:
        arguments = queue.arguments
        if arguments.dead_letter_exchange is None:
            return  # RabbitMQ drops it too
        headers = dict(message.headers)
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", queue.name)
        headers.setdefault("x-first-death-exchange", message.exchange)
        self._route(
            arguments.dead_letter_exchange,
            arguments.dead_letter_routing_key or message.routing_key,
            message.body,
            headers,
            message.message_id,
        )

    def _dispatch(self, queue: _Queue) -> None:
        while queue.ready and not self._down:
            subscription = queue.next_subscription()
            if subscription is None:
                return
            message = queue.ready.popleft()
            number = next(self._counter)
            subscription.unsettled[number] = message
            headers = dict(message.headers)
            if message.delivery_count:
                headers[DELIVERY_COUNT_HEADER] = message.delivery_count
            subscription.consumer._deliver(
                Delivery(
                    body=message.body,
                    headers=headers,
                    routing_key=message.routing_key,
                    queue=queue.name,
                    redelivered=message.redelivered,
                    delivery_count=message.delivery_count,
                    message_id=message.message_id,
                    tag=_Tag(subscription, number),
                )
            )


class MemoryConsumer(Consumer):
    """Deliveries from queues of a :class:`MemoryNode`."""

    def __init__(self, node: MemoryNode, connection: MemoryBroker) -> None:
        super().__init__()
        self._node = node
        self._connection = connection
        self._subscriptions: list[_Subscription] = []
        self._closed = False

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries as done; settling a stale delivery does nothing."""
        self._node._settle(self, deliveries, dead_letter=False)

    async def reject(self, deliveries: Sequence[Delivery]) -> None:
        """Send deliveries to their queue's dead-letter exchange."""
        self._node._settle(self, deliveries, dead_letter=True)

    async def close(self) -> None:
        """Stop consuming; unsettled deliveries return to their queues."""
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            self._node._unsubscribe(subscription)
        self._subscriptions.clear()
        self._connection._consumers.discard(self)
        self._stop()


class MemoryBroker(Broker):
    """One connection to a :class:`MemoryNode`."""

    def __init__(self, node: MemoryNode) -> None:
        self._node = node
        self._consumers: set[MemoryConsumer] = set()
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise BrokerUnavailable("this connection is closed")
        self._node._check_up()

    async def declare(self, topology: EndpointTopology) -> None:
        """Declare an endpoint's exchanges and queues (idempotent)."""
        self._check()
        self._node._declare(topology)

    async def declare_queue(self, name: str) -> None:
        """Declare a queue reached through the default exchange (idempotent)."""
        self._check()
        self._node._declare_queue(name, _QueueArguments())

    async def delete_queue(self, name: str) -> None:
        """Delete queue ``name`` and its messages, if it exists."""
        self._check()
        self._node._delete_queue(name)

    async def publish(self, messages: Sequence[OutboxRecord]) -> list[bool]:
        """Route each message; False for a message no queue takes."""
        self._check()
        return [
            self._node._route(m.exchange, m.routing_key, m.body, dict(m.headers), m.message_id)
            for m in messages
        ]

    async def consume(self, queues: Sequence[str], prefetch: int) -> Consumer:
        """Start consuming ``queues`` with at most ``prefetch`` unsettled deliveries each."""
        self._check()
        check_consume_arguments(queues, prefetch)
        consumer = MemoryConsumer(self._node, self)
        self._node._subscribe(consumer, queues, prefetch)
        self._consumers.add(consumer)
        return consumer

    async def ping(self) -> None:
        """Raise :class:`~durable_sessions.errors.BrokerUnavailable` unless connected."""
        self._check()

    async def close(self) -> None:
        """Close the connection and its consumers."""
        for consumer in list(self._consumers):
            await consumer.close()
        self._closed = True
