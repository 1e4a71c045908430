"""The broker port on RabbitMQ 3.10+, with aio-pika's robust connection.

Topology: per endpoint a durable direct exchange and its durable direct dead-letter exchange;
every queue a durable quorum queue, those marked ``dead_lettered`` with a delivery limit and
the dead-letter exchange (routing key ``dead``), which routes to the dead-letter queue.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange

from durable_sessions.broker.base import Broker, Consumer, check_consume_arguments
from durable_sessions.broker.rabbitmq.connection import (
    DEFAULT_RECONNECT_INTERVAL,
    broker_errors,
    describe,
    is_open,
    open_connection,
)
from durable_sessions.broker.rabbitmq.consumer import RabbitConsumer
from durable_sessions.broker.rabbitmq.publisher import DEFAULT_CONFIRM_TIMEOUT, Publisher
from durable_sessions.errors import BrokerError, BrokerUnavailable
from durable_sessions.model.records import OutboxRecord
from durable_sessions.model.topology import DEAD_KEY, EndpointTopology, QueueSpec
from durable_sessions.settings import redact_url

DEFAULT_CONNECT_TIMEOUT = 10.0


def queue_arguments(topology: EndpointTopology, spec: QueueSpec) -> dict[str, Any]:
    """The arguments ``spec`` is declared with: a quorum queue, maybe dead-lettered."""
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    if spec.dead_lettered:
        arguments["x-delivery-limit"] = topology.delivery_limit
        arguments["x-dead-letter-exchange"] = topology.dead_letter_exchange
        arguments["x-dead-letter-routing-key"] = DEAD_KEY
    return arguments


class RabbitBroker(Broker):
    """A connection to RabbitMQ that reconnects by itself; make one with :meth:`connect`."""

    def __init__(self, url: str, connection: aio_pika.RobustConnection, publisher: Publisher):
        self._url = url
        self._connection = connection
        self._publisher = publisher
        self._consumers: weakref.WeakSet[RabbitConsumer] = weakref.WeakSet()
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str = "durable-sessions",
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL,
        ca_file: str | None = None,
    ) -> RabbitBroker:
        """Connect to ``url``, or raise :class:`BrokerUnavailable` (the password redacted).

        ``name`` labels the connection in RabbitMQ's tools; ``confirm_timeout`` bounds the
        wait for each publisher confirm; after a loss, reconnection is attempted every
        ``reconnect_interval`` seconds. An ``amqps://`` URL verifies the broker's certificate
        against ``ca_file`` (else the system's CAs); a certificate that does not verify raises
        :class:`BrokerUnavailable` saying so.
        """
        connection = await open_connection(
            url,
            name=name,
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
            ca_file=ca_file,
        )
        publisher = Publisher(connection, url=url, confirm_timeout=confirm_timeout)
        try:
            await publisher.open()
        except (aiormq.exceptions.AMQPError, OSError, RuntimeError) as e:
            await connection.close()
            raise BrokerUnavailable(
                f"cannot open a channel on RabbitMQ at {redact_url(url)}: {describe(e)}"
            ) from e
        return cls(url, connection, publisher)

    @property
    def confirm_timeout(self) -> float:
        """Seconds a publish waits for its confirm before it counts as not confirmed."""
        return self._publisher.confirm_timeout

    @confirm_timeout.setter
    def confirm_timeout(self, seconds: float) -> None:
        self._publisher.confirm_timeout = seconds

    def _require_open(self, action: str) -> None:
        if self._closed or not is_open(self._connection):
            state = "closed" if self._closed else "down (reconnecting)"
            where = redact_url(self._url)
            raise BrokerUnavailable(f"cannot {action}: the connection to {where} is {state}")

    @contextlib.asynccontextmanager
    async def _transient_channel(self) -> AsyncIterator[AbstractChannel]:
        """A plain channel for one-off commands: not restored, so an error just closes it."""
        channel = aio_pika.Channel(self._connection, publisher_confirms=False)
        await channel.initialize()
        try:
            yield channel
        finally:
            with contextlib.suppress(aiormq.exceptions.AMQPError, RuntimeError):
                await channel.close()

    async def declare(self, topology: EndpointTopology) -> None:
        """Declare the endpoint's exchanges and quorum queues (idempotent).

        A queue that exists with other arguments raises :class:`BrokerError` naming it.
        """
        self._require_open("declare")
        with broker_errors(f"declare endpoint {topology.endpoint!r}", self._url):
            async with self._transient_channel() as channel:
                exchange = await channel.declare_exchange(
                    topology.exchange, aio_pika.ExchangeType.DIRECT, durable=True
                )
                dlx = await channel.declare_exchange(
                    topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
                )
                for spec in topology.queues:
                    await self._declare_queue(channel, topology, spec, exchange)
                await self._declare_queue(channel, topology, topology.dead_letter_queue, dlx)
        self._publisher.exchange_exists(topology.exchange)
        self._publisher.exchange_exists(topology.dead_letter_exchange)

    async def _declare_queue(
        self,
        channel: AbstractChannel,
        topology: EndpointTopology,
        spec: QueueSpec,
        exchange: AbstractExchange,
    ) -> None:
        try:
            queue = await channel.declare_queue(
                spec.name, durable=True, arguments=queue_arguments(topology, spec)
            )
        except aiormq.exceptions.ChannelPreconditionFailed as e:
            raise BrokerError(
                f"queue {spec.name!r} already exists with different arguments "
                f"({describe(e)}). Queue arguments cannot change in place: drain and delete "
                f"the queue (rabbitmqctl delete_queue {spec.name}), or declare the endpoint "
                "with the settings it was created with (such as its delivery limit)"
            ) from e
        await queue.bind(exchange, spec.routing_key)

    async def declare_queue(self, name: str) -> None:
        """Declare a durable quorum queue reached through the default exchange (idempotent)."""
        self._require_open("declare")
        with broker_errors(f"declare queue {name!r}", self._url):
            async with self._transient_channel() as channel:
                await channel.declare_queue(
                    name, durable=True, arguments={"x-queue-type": "quorum"}
                )

    async def delete_queue(self, name: str) -> None:
        """Delete queue ``name`` and its messages (RabbitMQ ignores a queue that is not there)."""
        self._require_open("delete a queue")
        with broker_errors(f"delete queue {name!r}", self._url):
            async with self._transient_channel() as channel:
                await channel.queue_delete(name)

    async def publish(self, messages: Sequence[OutboxRecord]) -> list[bool]:
        """Publish persistently with confirms, the whole batch in flight at once.

        False for a message the broker nacked, returned as unroutable, or did not confirm
        within :attr:`confirm_timeout`; a lost connection raises :class:`BrokerUnavailable`.
        """
        self._require_open("publish")
        return await self._publisher.publish(messages)

    async def consume(self, queues: Sequence[str], prefetch: int) -> Consumer:
        """Consume ``queues`` on a channel of their own, ``prefetch`` unsettled per queue."""
        check_consume_arguments(queues, prefetch)
        self._require_open("consume")
        with broker_errors(f"consume {', '.join(queues)}", self._url):
            # Checked first on a plain channel: a missing queue closes the channel it is
            # asked on, and the consumer's channel would then try to restore itself.
            async with self._transient_channel() as probe:
                for name in queues:
                    try:
                        await probe.declare_queue(name, passive=True)
                    except aiormq.exceptions.ChannelNotFoundEntity as e:
                        raise BrokerError(
                            f"queue {name!r} does not exist: declare its endpoint first"
                        ) from e
            channel = self._connection.channel(publisher_confirms=False)
            await channel.initialize()
            consumer = RabbitConsumer(self._connection, channel)
            try:
                await channel.set_qos(prefetch_count=prefetch)
                for name in queues:
                    await consumer.subscribe(await channel.declare_queue(name, passive=True))
            except BaseException:
                await consumer.close()
                raise
        self._consumers.add(consumer)
        return consumer

    async def ping(self) -> None:
        """Raise :class:`BrokerUnavailable` unless the connection is open right now."""
        self._require_open("ping")

    async def close(self) -> None:
        """Close the consumers (their unsettled deliveries go back), then the connection."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.close()
        await self._publisher.close()
        await self._connection.close()
