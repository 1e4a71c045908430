"""Consuming with manual settlement, on one robust channel per consumer.

The channel's prefetch (``basic.qos``, per consumer) caps unsettled deliveries on each queue.
When the connection comes back after a loss, aio-pika reopens the channel, restores the prefetch
and consumes again with the same consumer tags, so deliveries resume by themselves; deliveries
made on the lost channel are already back in their queues, and settling them does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from durable_sessions.broker.base import DELIVERY_COUNT_HEADER, Consumer, Delivery
from durable_sessions.broker.rabbitmq.connection import is_open
from durable_sessions.errors import ConfigurationError

_CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the broker while closing; past that the channel is dropped anyway."""

_SETTLE_ERRORS = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError)


@dataclass(frozen=True, slots=True)
class _Tag:
    """A delivery tag, which only means something on the channel that made the delivery."""

    consumer: RabbitConsumer
    channel: aiormq.abc.AbstractChannel
    number: int


def delivery_count(message: AbstractIncomingMessage) -> int:
    """Deliveries before this one: quorum queues say so in a header on redeliveries."""
    count = (message.headers or {}).get(DELIVERY_COUNT_HEADER)
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    return 1 if message.redelivered else 0


class RabbitConsumer(Consumer):
    """Deliveries from RabbitMQ queues, settled with ``basic.ack`` / ``basic.nack``."""

    def __init__(self, connection: aio_pika.RobustConnection, channel: AbstractRobustChannel):
        super().__init__()
        self._connection = connection
        self._channel = channel
        self._subscriptions: list[tuple[AbstractQueue, str]] = []
        self._unsettled: dict[aiormq.abc.AbstractChannel, set[int]] = {}
        self._closed = False

    async def subscribe(self, queue: AbstractQueue) -> None:
        """Start consuming ``queue`` on this consumer's channel."""
        tag = await queue.consume(self._receiver(queue.name), no_ack=False)
        self._subscriptions.append((queue, tag))

    def _receiver(self, queue: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def receive(message: AbstractIncomingMessage) -> None:
            try:
                channel = message.channel
            except aiormq.exceptions.ChannelInvalidStateError:
                return  # its channel closed already: the broker delivers it again
            if self._closed or message.delivery_tag is None:
                return
            if channel not in self._unsettled:
                self._forget_closed_channels()
                self._unsettled[channel] = set()
            self._unsettled[channel].add(message.delivery_tag)
            self._deliver(
                Delivery(
                    body=message.body,
                    headers=dict(message.headers or {}),
                    routing_key=message.routing_key or "",
                    queue=queue,
                    redelivered=bool(message.redelivered),
                    delivery_count=delivery_count(message),
                    message_id=message.message_id,
                    tag=_Tag(self, channel, message.delivery_tag),
                )
            )

        return receive

    def _forget_closed_channels(self) -> None:
        for channel in [c for c in self._unsettled if c.is_closed]:
            del self._unsettled[channel]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries as done; those of a closed channel are left to the broker."""
        await self._settle(deliveries, reject=False)

    async def reject(self, deliveries: Sequence[Delivery]) -> None:
        """Nack deliveries without requeue, which sends them to the dead-letter exchange."""
        await self._settle(deliveries, reject=True)

    async def _settle(self, deliveries: Sequence[Delivery], *, reject: bool) -> None:
        by_channel: dict[aiormq.abc.AbstractChannel, set[int]] = {}
        for delivery in deliveries:
            tag = delivery.tag
            if not isinstance(tag, _Tag) or tag.consumer is not self:
                raise ConfigurationError(f"not a delivery of this consumer: {delivery!r}")
            by_channel.setdefault(tag.channel, set()).add(tag.number)
        for channel, asked in by_channel.items():
            unsettled = self._unsettled.get(channel)
            if unsettled is None or channel.is_closed:
                continue
            # Settling a tag twice would make the broker close the channel (406) and requeue
            # everything unsettled on it, so tags already settled are skipped.
            numbers = asked & unsettled
            if not numbers:
                continue
            unsettled -= numbers
            with contextlib.suppress(*_SETTLE_ERRORS):
                await self._send(channel, numbers, unsettled, reject=reject)

    @staticmethod
    async def _send(
        channel: aiormq.abc.AbstractChannel,
        numbers: set[int],
        still_unsettled: set[int],
        *,
        reject: bool,
    ) -> None:
        highest = max(numbers)
        # One frame settles them all when nothing else unsettled sits below the highest tag.
        if len(numbers) > 1 and not any(n < highest for n in still_unsettled):
            settle_at: list[tuple[int, bool]] = [(highest, True)]
        else:
            settle_at = [(n, False) for n in sorted(numbers)]
        for number, multiple in settle_at:
            if reject:
                await channel.basic_nack(number, multiple=multiple, requeue=False)
            else:
                await channel.basic_ack(number, multiple=multiple)

    async def close(self) -> None:
        """Cancel the consumers and close the channel; unsettled deliveries go back."""
        if self._closed:
            return
        self._closed = True
        if is_open(self._connection):
            for queue, tag in self._subscriptions:
                with contextlib.suppress(*_SETTLE_ERRORS, TimeoutError):
                    async with asyncio.timeout(_CLOSE_TIMEOUT):
                        await queue.cancel(tag)
        with contextlib.suppress(*_SETTLE_ERRORS, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._channel.close()
        self._subscriptions.clear()
        self._unsettled.clear()
        self._stop()
