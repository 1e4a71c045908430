"""AMQP addresses of the reliable-session binding, and envelopes as messages to them.

An AMQP address names a queue reached through the default exchange: ``amqp:/queues/<name>``
(RabbitMQ's AMQP 1.0 address form).
"""

from __future__ import annotations

from durable_sessions.model.records import OutboxRecord, utcnow
from durable_sessions.wsrm.messages import Envelope, RMVersion
from durable_sessions.wsrm.xml import codec

ADDRESS_PREFIX = "amqp:/queues/"
SOAP_HEADERS = {"content-type": "application/soap+xml; charset=utf-8"}


def queue_address(queue: str) -> str:
    """The address of ``queue``."""
    return f"{ADDRESS_PREFIX}{queue}"


def address_queue(address: str | None) -> str | None:
    """The queue an address names; None for any other address (such as anonymous)."""
    if address is None or not address.startswith(ADDRESS_PREFIX):
        return None
    return address.removeprefix(ADDRESS_PREFIX) or None


def envelope_record(queue: str, envelope: Envelope, version: RMVersion) -> OutboxRecord:
    """``envelope`` as a message to ``queue``, for the outbox or the broker."""
    return OutboxRecord(
        exchange="",
        routing_key=queue,
        body=codec.encode(envelope, version),
        created_at=utcnow(),
        headers=dict(SOAP_HEADERS),
        message_id=envelope.message_id,
    )
