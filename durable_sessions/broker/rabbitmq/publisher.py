"""Publishing with confirms: a whole batch written at once, one answer per message.

Each message is persistent and ``mandatory``. The broker answers every publish with an ack or
a nack, and first sends back (``basic.return``) a message no queue took; aiormq then resolves
the publish with the returned message, so only a plain ack counts as confirmed.

Throughput comes from the in-flight window and from writing it in one go: the frames of every
message of a batch are marshalled into one buffer and handed to the connection's writer at
once, with one confirmation per delivery tag registered on the aiormq channel exactly as its
``basic_publish`` registers it. One buffer is one socket write, where a ``basic_publish`` per
message costs a write, a lock, a drain and a task each (about four times the CPU).

A publish to a missing exchange makes the broker close the channel, and aiormq would go on
writing the rest of the batch to the closed channel, which makes the broker close the whole
connection (504 CHANNEL_ERROR). So exchanges are checked once, on a channel of their own,
before anything is published to them; messages to a missing exchange are not confirmed. (An
exchange deleted after its check still costs the channel, once; it is checked again after.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import HeadersType
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from durable_sessions.broker.rabbitmq.connection import broker_errors, describe, is_open
from durable_sessions.errors import BrokerUnavailable
from durable_sessions.model.records import OutboxRecord
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
        confirmed = [False] * len(messages)
        waiting = [
            (index, m.message_id or uuid.uuid4().hex, m)
            for index, m in enumerate(messages)
            if m.exchange not in missing
        ]
        lost: BaseException | None = None
        while waiting and lost is None:
            batch, waiting = self._next_round(waiting)
            if not batch:
                await self._in_flight[waiting[0][1]].wait()
                continue
            outcomes = await self._publish_round(channel, batch)
            for (index, _, _), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    lost = outcome
                else:
                    confirmed[index] = outcome
        if lost is not None or self._losses != losses or not is_open(self._connection):
            error = lost or ConnectionError("connection closed")
            raise self._unavailable(error) from lost
        return confirmed

    def _next_round(self, waiting: _Waiting) -> tuple[_Waiting, _Waiting]:
        """The messages to publish now, and those to publish after them.

        aiormq finds the publish a ``basic.return`` belongs to by the message id; with two
        publishes of one id in flight, the return of one would resolve the other, and the
        unroutable one would be reported confirmed. So an id goes out once per round, and not
        while another publish of it (by another caller) awaits its confirm.
        """
        now: _Waiting = []
        later: _Waiting = []
        taken: set[str] = set()
        for item in waiting:
            message_id = item[1]
            if message_id in taken or message_id in self._in_flight:
                later.append(item)
            else:
                taken.add(message_id)
                now.append(item)
        return now, later

    async def _publish_round(
        self, channel: aiormq.Channel, batch: _Waiting
    ) -> list[bool | ConnectionError]:
        """Write the batch in one buffer and wait for its confirms.

        Per message: whether it was confirmed, or the error that says the connection is lost.
        """
        done = asyncio.Event()
        for _, message_id, _ in batch:
            self._in_flight[message_id] = done
        try:
            try:
                confirmations = await self._write(channel, batch)
            except aiormq.exceptions.ChannelInvalidStateError:
                return [False] * len(batch)  # closed before anything was written
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.confirm_timeout):
                    await asyncio.wait(confirmations)
            return [
                self._outcome(c, record)
                for c, (_, _, record) in zip(confirmations, batch, strict=True)
            ]
        finally:
            for _, message_id, _ in batch:
                del self._in_flight[message_id]
            done.set()

    @staticmethod
    async def _write(channel: aiormq.Channel, batch: _Waiting) -> list[asyncio.Future[Any]]:
        """Register a confirmation per delivery tag, as ``basic_publish`` does, then write."""
        frames: list[Any] = []
        confirmations: list[asyncio.Future[Any]] = []
        async with channel.lock:
            first_tag = channel.delivery_tag + 1
            for _, message_id, record in batch:
                channel.delivery_tag += 1
                tag = channel.delivery_tag
                confirmation = channel.create_future()
                channel.confirmations[tag] = confirmation
                channel.message_id_delivery_tag[message_id] = tag
                confirmation.add_done_callback(functools.partial(_forget, channel, message_id, tag))
                confirmations.append(confirmation)
                frames += _frames(record, message_id, channel.max_content_size)
            try:
                await channel.write_queue.put(
                    ChannelFrame.marshall(channel_number=channel.number, frames=frames)
                )
            except BaseException:
                # Nothing reached the writer: give the delivery tags back, as basic_publish does.
                channel.delivery_tag = first_tag - 1
                for tag in range(first_tag, first_tag + len(batch)):
                    channel.confirmations.pop(tag, None)
                for confirmation in confirmations:
                    confirmation.cancel()
                raise
        return confirmations

    def _outcome(
        self, confirmation: asyncio.Future[Any], record: OutboxRecord
    ) -> bool | ConnectionError:
        if not confirmation.done():
            confirmation.cancel()  # too late: its confirm is ignored when it comes
            return False
        if confirmation.cancelled():
            return False
        error = confirmation.exception()
        if error is None:
            return isinstance(confirmation.result(), aiormq.spec.Basic.Ack)
        if isinstance(error, ConnectionError):
            return error
        if isinstance(error, aiormq.exceptions.ChannelNotFoundEntity):
            self._exchanges.discard(record.exchange)  # deleted since it was checked
            return False
        if isinstance(error, (aiormq.exceptions.AMQPError, *_CHANNEL_GONE)):
            return False  # a nack, or the channel closed by another message's error
        raise error

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

    async def _open_channel(self) -> aiormq.Channel:
        async with self._channel_lock:
            if self._channel is None or self._channel.is_closed:
                await self._drop_channel()
                channel = aio_pika.Channel(self._connection, publisher_confirms=True)
                await channel.initialize(timeout=self.confirm_timeout)
                self._channel = channel
            underlay = await self._channel.get_underlay_channel()
        if not isinstance(underlay, aiormq.Channel):
            raise TypeError(f"publishing needs an aiormq channel, not {underlay!r}")
        return underlay

    async def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await channel.close()


_Waiting = list[tuple[int, str, OutboxRecord]]
"""Messages of a publish still to go out: position in the batch, message id, record."""


def _frames(record: OutboxRecord, message_id: str, max_content_size: int) -> list[Any]:
    """The method, header and body frames that publish ``record``."""
    headers: HeadersType = dict(record.headers)
    properties = aiormq.spec.Basic.Properties(
        content_type=str(headers.get(CONTENT_TYPE_HEADER, DEFAULT_CONTENT_TYPE)),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        message_id=message_id,
        headers=headers,
    )
    body = record.body
    return [
        aiormq.spec.Basic.Publish(
            exchange=record.exchange, routing_key=record.routing_key, mandatory=True
        ),
        ContentHeader(properties=properties, body_size=len(body)),
        *(
            ContentBody(body[start : start + max_content_size])
            for start in range(0, len(body), max_content_size)
        ),
    ]


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    """Drop the message id's entry once its publish is answered (unless reused since)."""
    if channel.message_id_delivery_tag.get(message_id) == tag:
        del channel.message_id_delivery_tag[message_id]
