"""The reliable-session binding over AMQP: WS-RM envelopes as message bodies.

An AMQP address names a queue, reached through the default exchange: ``amqp:/queues/<name>``
(RabbitMQ's AMQP 1.0 address form). Each endpoint has a WS-RM queue (``ds.<endpoint>.wsrm``,
declared with the endpoint's topology); every sequence of an :class:`AmqpReliableSessionClient`
has a reply queue of its own, named after its CreateSequence so a resumed sequence finds it,
and deleted when the sequence ends.

- :class:`AmqpReliableDestination` consumes the endpoint's WS-RM queue, hands each envelope to
  the endpoint's :class:`~durable_sessions.reliable.host.ReliableSessionHost` and publishes the
  answer to the address it names, else to the request's ReplyTo (FaultTo for faults). Losing
  an answer, or a request the store could not take, is safe: the source retransmits. Envelopes
  that cannot be read are dead-lettered with the endpoint's dead letters.
- :class:`AmqpReliableSessionClient` is the RM source: the session logic of
  :class:`~durable_sessions.reliable.client.ReliableSession` over a link that publishes to the
  destination's queue and reads its reply queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from durable_sessions.broker.base import Broker, Consumer, Delivery
from durable_sessions.engine.outbox import OutboxRelay
from durable_sessions.errors import (
    BrokerUnavailable,
    ConfigurationError,
    MessageRejected,
    SessionError,
    StoreError,
)
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import OutboxRecord, utcnow
from durable_sessions.reliable.calls import CALL_FORMAT
from durable_sessions.reliable.client import DEFAULT_SEND_TIMEOUT_S, Link, ReliableClient
from durable_sessions.reliable.host import ReliableSessionHost
from durable_sessions.reliable.options import EndpointOptions
from durable_sessions.reliable.refusals import refusal
from durable_sessions.reliable.wakeups import DestinationWakeups
from durable_sessions.store.base import Store
from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import (
    WSA_ANONYMOUS,
    Envelope,
    Fault,
    RMVersion,
    reply_address,
)
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.xml import codec

log = logging.getLogger(__name__)

ADDRESS_PREFIX = "amqp:/queues/"
SOAP_HEADERS = {"content-type": "application/soap+xml; charset=utf-8"}
DEFAULT_PREFETCH = 64
TIMER_SLACK_S = 0.02
"""How much later than its due time a scheduled wake-up runs (a timer may fire early)."""
REPLY_QUEUE_PREFIX = "ds.wsrm.reply."


def queue_address(queue: str) -> str:
    """The address of ``queue``."""
    return f"{ADDRESS_PREFIX}{queue}"


def address_queue(address: str | None) -> str | None:
    """The queue an address names; None for any other address (such as anonymous)."""
    if address is None or not address.startswith(ADDRESS_PREFIX):
        return None
    return address.removeprefix(ADDRESS_PREFIX) or None


def reply_queue(create_id: str) -> str:
    """The reply queue of the sequence that CreateSequence ``create_id`` makes."""
    return f"{REPLY_QUEUE_PREFIX}{uuid.uuid5(uuid.NAMESPACE_URL, create_id).hex}"


def _envelope_record(queue: str, envelope: Envelope, version: RMVersion) -> OutboxRecord:
    return OutboxRecord(
        exchange="",
        routing_key=queue,
        body=codec.encode(envelope, version),
        created_at=utcnow(),
        headers=dict(SOAP_HEADERS),
        message_id=envelope.message_id,
    )


class AmqpReliableDestination:
    """Serves ``endpoint``'s WS-RM queue until :meth:`stop`; see the module docstring.

    ``options`` are the endpoint's reliable-session settings. Acknowledgements are batched for
    their interval, as WCF's destination does for an addressable source: one falling due is
    sent to AcksTo by a wake-up scheduled for that moment (the sweepers' wake-ups, given
    :func:`publish_envelope` to send with, are the backstop).
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        endpoint: Endpoint,
        *,
        options: EndpointOptions | None = None,
        relay: OutboxRelay | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        options = options or EndpointOptions()
        self.broker = broker
        self.queue = endpoint.topology.wsrm_queue.name
        self.address = queue_address(self.queue)
        self.host = ReliableSessionHost(
            store,
            endpoint,
            CALL_FORMAT,
            address=self.address,
            settings=options.settings,
            versions=options.versions,
            relay=relay,
            batch_acknowledgements=True,
            on_ack_due=self._ack_due,
            clock=clock,
        )
        self._wakeups = DestinationWakeups(
            store,
            {endpoint.name: options.settings},
            send=functools.partial(publish_envelope, broker),
        )
        self._clock = clock
        self.prefetch = prefetch
        self._consumer: Consumer | None = None
        self._stopped = False
        self._waking: set[asyncio.Task[bool]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def _ack_due(self, identifier: str, delay_s: float) -> None:
        if identifier in self._timers:
            return  # the acknowledgement due covers what arrived since

        def wake() -> None:
            del self._timers[identifier]
            task = asyncio.create_task(self._wake(identifier))
            self._waking.add(task)
            task.add_done_callback(self._waking.discard)

        loop = asyncio.get_running_loop()
        self._timers[identifier] = loop.call_later(max(delay_s, 0.0) + TIMER_SLACK_S, wake)

    async def _wake(self, identifier: str) -> bool:
        try:
            return await self._wakeups.wake(identifier, self._clock())
        except StoreError as error:  # the sweeper wakes it later
            log.warning("could not send the acknowledgement of %s yet: %s", identifier, error)
            return False

    async def run(self) -> None:
        """Consume the WS-RM queue (declared with the endpoint's topology) until stopped."""
        self._consumer = consumer = await self.broker.consume([self.queue], self.prefetch)
        if self._stopped:  # stopped while it was starting to consume
            await consumer.close()
            return
        # Each envelope is settled on its own: one waiting for its reply holds up no other.
        settling: set[asyncio.Task[None]] = set()
        try:
            while batch := await consumer.next_batch(self.prefetch, 0.0):
                for delivery in batch:
                    task = asyncio.create_task(self._settle(consumer, delivery))
                    settling.add(task)
                    task.add_done_callback(settling.discard)
        except asyncio.CancelledError:
            for task in settling:
                task.cancel()
            raise
        finally:
            await asyncio.gather(*settling, return_exceptions=True)
            await consumer.close()

    async def stop(self) -> None:
        """Stop consuming; envelopes not yet acknowledged go back to the queue.

        Acknowledgements not yet due are left to the sweepers.
        """
        self._stopped = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._consumer is not None:
            await self._consumer.close()
        await asyncio.gather(*self._waking, return_exceptions=True)

    async def _settle(self, consumer: Consumer, delivery: Delivery) -> None:
        """Handle one envelope, then acknowledge it, or dead-letter it if it is unreadable.

        The broker's prefetch bounds how many are settled at once. An envelope lost to an
        unexpected error is only one the source sends again.
        """
        try:
            readable = await self._handle(delivery)
        except Exception:
            log.exception("dead-lettered a WS-RM envelope that could not be handled")
            readable = False
        await (consumer.ack if readable else consumer.reject)([delivery])

    async def _handle(self, delivery: Delivery) -> bool:
        try:
            inbound = codec.decode_message(delivery.body)
        except EnvelopeRejected as error:
            log.warning("dead-lettered an unreadable WS-RM envelope: %s", error.fault.reason)
            return False
        request = inbound.envelope
        version = inbound.rm_version or self.host.settings.version
        try:
            answer = await self.host.handle(request, version)
        except (MessageRejected, SessionError, ConfigurationError) as error:
            answer = refusal(error, request, version)
        except StoreError as error:
            log.warning("dropped a WS-RM envelope for its source to resend: %s", error)
            return True
        if answer is not None:
            await self._answer(answer, request, version)
        return True

    async def _answer(self, answer: Envelope, request: Envelope, version: RMVersion) -> None:
        to = answer.to
        if to is None or to == WSA_ANONYMOUS:
            to = reply_address(request, fault=isinstance(answer.body, Fault))
        await publish_envelope(self.broker, dataclasses.replace(answer, to=to), version)


async def publish_envelope(broker: Broker, envelope: Envelope, version: RMVersion) -> None:
    """Publish ``envelope`` to the AMQP address in its ``To``, unconfirmed: if it is lost, the
    source asks again. An address that is not AMQP's is logged and skipped."""
    queue = address_queue(envelope.to)
    if queue is None:
        log.warning("cannot send %s: %s is not an AMQP address", envelope.action, envelope.to)
        return
    try:
        await broker.publish([_envelope_record(queue, envelope, version)])
    except BrokerUnavailable as error:
        log.warning("could not send %s to %s: %s", envelope.action, envelope.to, error)


class AmqpReliableSessionClient(ReliableClient):
    """Opens WS-RM sequences to the destination at ``address`` over ``broker``.

    ``address`` is the destination's :func:`queue_address` (its endpoint's WS-RM queue).
    ``broker`` is left open; :meth:`aclose` stops reading the reply queues of sequences
    still open, which stay stored (queue included) and resumable.
    """

    def __init__(
        self,
        address: str,
        contract: type[Any],
        *,
        broker: Broker,
        store: Store,
        settings: ReliableSessionSettings | None = None,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        queue = address_queue(address)
        if queue is None:
            raise ConfigurationError(
                f"{address!r} is not an AMQP address: use {queue_address('<queue>')!r}"
            )
        super().__init__(
            address,
            contract,
            store=store,
            calls=CALL_FORMAT,
            settings=settings,
            send_timeout_s=send_timeout_s,
            clock=clock,
        )
        self.broker = broker
        self.queue = queue
        self._links: set[_AmqpLink] = set()

    async def link(self, create_id: str) -> Link:
        """Declare the sequence's reply queue and start reading it."""
        queue = reply_queue(create_id)
        await self.broker.declare_queue(queue)
        consumer = await self.broker.consume([queue], DEFAULT_PREFETCH)
        link = _AmqpLink(self, queue, consumer)
        self._links.add(link)
        return link

    async def aclose(self) -> None:
        """Stop reading the reply queues of the sequences still open."""
        for link in list(self._links):
            await link.close(ended=False)


class _AmqpLink(Link):
    def __init__(self, client: AmqpReliableSessionClient, queue: str, consumer: Consumer) -> None:
        self.client = client
        self.queue = queue
        self.consumer = consumer

    @property
    def reply_address(self) -> str:
        return queue_address(self.queue)

    async def send(self, envelope: Envelope) -> Envelope | None:
        record = _envelope_record(self.client.queue, envelope, self.client.settings.version)
        try:
            await self.client.broker.publish([record])
        except BrokerUnavailable as error:
            log.warning("lost a WS-RM envelope on the way (it is resent): %s", error)
        return None  # the answers come on the reply queue

    async def receive(self, within_s: float) -> list[Envelope]:
        try:
            async with asyncio.timeout(within_s):
                batch = await self.consumer.next_batch(DEFAULT_PREFETCH, 0.0)
        except TimeoutError:
            return []
        await self.consumer.ack(batch)
        arrived = []
        for delivery in batch:
            try:
                arrived.append(codec.decode(delivery.body))
            except EnvelopeRejected as error:
                log.warning("ignored an unreadable WS-RM envelope: %s", error.fault.reason)
        return arrived

    async def close(self, *, ended: bool) -> None:
        self.client._links.discard(self)
        await self.consumer.close()
        if ended:
            await self.client.broker.delete_queue(self.queue)
