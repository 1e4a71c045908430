"""Publishing with confirms: a whole batch in flight at once, one answer per message.

Each message is persistent and ``mandatory``. The broker answers every publish with an ack or
a nack, and first sends back (``basic.return``) a message no queue took; aiormq then resolves
the publish with the returned message, so only a plain ack counts as confirmed. Throughput
comes from the in-flight window: every message of a batch is written before any confirm is
awaited.

A publish to a missing exchange makes the broker close the channel, and aiormq would go on
writing the rest of the batch to the closed channel, which makes the broker close the whole
connection (504 CHANNEL_ERROR). So exchanges are checked once, on a channel of their own,
before anything is published to them; messages to a missing exchange are not confirmed. (An
exchange deleted after its check still costs the connection once; it is checked again after.)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import HeadersType

from durable_sessions.errors import BrokerUnavailable
from durable_sessions.rabbitmq.connection import broker_errors, describe, is_open
from durable_sessions.records import OutboxRecord
from durable_sessions.settings import redact_url

DEFAULT_CONFIRM_TIMEOUT = 30.0
"""Seconds a publish may wait for its confirm before it counts as not confirmed."""

DEFAULT_CONTENT_TYPE = "application/json"
CONTENT_TYPE_HEADER = "content-type"
"""A record header that, when present, sets the message's content type property."""

_DRIVER_ERRORS = (aiormq.exceptions.AMQPError, OSError, RuntimeError)
"""What closing a channel may raise when its connection is gone."""

_CHANNEL_GONE = (aiormq.exceptions.ChannelInvalidStateError, asyncio.CancelledError)
"""How a publish ends when its channel closed under it (not when the caller was cancelled)."""


class Publisher:
    """Publishes batches in confirm mode on a channel reopened whenever it was closed."""

    def __init__(
        self, connection: aio_pika.RobustConnection, *, url: str, confirm_timeout: float
    ) -> None:
        self._connection = connection
        self._url = url
        self.confirm_timeout = confirm_timeout
        self._channel: aio_pika.Channel | None = None
        self._channel_lock = asyncio.Lock()
        self._exchanges: set[str] = {""}
        self._in_flight: dict[str, asyncio.Event] = {}
        self._losses = 0
        connection.close_callbacks.add(self._count_loss)

    def _count_loss(self, *_: Any) -> None:
        self._losses += 1

    def exchange_exists(self, name: str) -> None:
        """Note that exchange ``name`` exists (it was just declared)."""
        self._exchanges.add(name)

    async def open(self) -> None:
        """Open the publishing channel now, so that connecting fails early."""
        await self._open_channel()

    async def close(self) -> None:
        """Close the publishing channel."""
        async with self._channel_lock:
            await self._drop_channel()

    def _unavailable(self, error: BaseException) -> BrokerUnavailable:
        where = redact_url(self._url)
        return BrokerUnavailable(
            f"cannot publish: the connection to {where} was lost ({describe(error)})"
        )

    async def publish(self, messages: Sequence[OutboxRecord]) -> list[bool]:
        """For each message, True once the broker confirmed it; connection loss raises.

        The caller checks first that the connection is up.
        """
        if not messages:
            return []
        losses = self._losses
        with broker_errors("publish", self._url):
            missing = await self._missing_exchanges({m.exchange for m in messages})
            channel = await self._open_channel()
        outcomes = await asyncio.gather(
            *(self._publish_one(channel, m, m.exchange not in missing) for m in messages),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if not failures:
            return [o is True for o in outcomes]
        if (
            self._losses != losses
            or not is_open(self._connection)
            or any(isinstance(f, ConnectionError) for f in failures)
        ):
            raise self._unavailable(failures[0]) from failures[0]
        for failure in failures:
            if not isinstance(failure, _CHANNEL_GONE):
                raise failure
        # The channel closed before these were written (after an error of another message of
        # the batch): not confirmed, and the next batch gets a new channel.
        return [o is True for o in outcomes]

    async def _publish_one(
        self, channel: aiormq.abc.AbstractChannel, record: OutboxRecord, routable: bool
    ) -> bool:
        if not routable:
            return False
        message_id = record.message_id or uuid.uuid4().hex
        headers: HeadersType = dict(record.headers)
        properties = aiormq.spec.Basic.Properties(
            content_type=str(headers.get(CONTENT_TYPE_HEADER, DEFAULT_CONTENT_TYPE)),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            message_id=message_id,
            headers=headers,
        )
        async with self._exclusive(message_id):
            if channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
            try:
                result = await channel.basic_publish(
                    record.body,
                    exchange=record.exchange,
                    routing_key=record.routing_key,
                    properties=properties,
                    mandatory=True,
                    timeout=self.confirm_timeout,
                )
            except ConnectionError:
                raise
            except aiormq.exceptions.ChannelNotFoundEntity:
                self._exchanges.discard(record.exchange)  # deleted since it was checked
                return False
            except (aiormq.exceptions.AMQPError, TimeoutError):
                return False  # a nack, a timeout, or the channel closed by another's error
        return isinstance(result, aiormq.spec.Basic.Ack)

    @contextlib.asynccontextmanager
    async def _exclusive(self, message_id: str) -> AsyncIterator[None]:
        """Keep one publish per message id in flight.

        aiormq finds the publish a ``basic.return`` belongs to by the message id; with two
        publishes of one id in flight, the return of one would resolve the other, and the
        unroutable one would be reported confirmed.
        """
        while (busy := self._in_flight.get(message_id)) is not None:
            await busy.wait()
        done = self._in_flight[message_id] = asyncio.Event()
        try:
            yield
        finally:
            del self._in_flight[message_id]
            done.set()

    async def _missing_exchanges(self, names: set[str]) -> set[str]:
        missing: set[str] = set()
        for name in names - self._exchanges:
            # A passive declare of a missing exchange closes its channel: use a throwaway one.
            probe = aio_pika.Channel(self._connection, publisher_confirms=False)
            await probe.initialize(timeout=self.confirm_timeout)
            try:
                await probe.declare_exchange(name, passive=True, timeout=self.confirm_timeout)
            except aiormq.exceptions.ChannelNotFoundEntity:
                missing.add(name)
            else:
                self._exchanges.add(name)
            finally:
                with contextlib.suppress(*_DRIVER_ERRORS):
                    await probe.close()
        return missing

    async def _open_channel(self) -> aiormq.abc.AbstractChannel:
        async with self._channel_lock:
            if self._channel is None or self._channel.is_closed:
                await self._drop_channel()
                channel = aio_pika.Channel(self._connection, publisher_confirms=True)
                await channel.initialize(timeout=self.confirm_timeout)
                self._channel = channel
            return await self._channel.get_underlay_channel()

    async def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await channel.close()
