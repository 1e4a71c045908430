"""What only the real broker can show: its wire format, its arguments, its failures."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import pytest

from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.broker.rabbitmq.broker import queue_arguments
from durable_sessions.errors import BrokerError, BrokerUnavailable
from durable_sessions.model.records import OutboxRecord
from tests.broker.harness import WAIT, RabbitHarness, eventually, numbered, ready, record, take

pytestmark = pytest.mark.rabbitmq


def with_credentials(url: str, user: str, password: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{port or parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


async def get_raw(harness: RabbitHarness, queue: str) -> aio_pika.abc.AbstractIncomingMessage:
    """The next message of ``queue`` as aio-pika sees it, acked."""
    async with await aio_pika.connect(harness.server.url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        message = await declared.get(timeout=WAIT)
        await message.ack()
        return message


async def test_connection_refused_is_unavailable_without_the_password(
    rabbit: RabbitHarness,
) -> None:
    url = with_credentials(rabbit.server.url, "guest", "s3cret-pw", port=1)
    with pytest.raises(BrokerUnavailable) as refused:
        await RabbitBroker.connect(url)
    assert "s3cret-pw" not in str(refused.value)
    assert "guest:***@" in str(refused.value)


async def test_wrong_credentials_are_unavailable_without_the_password(
    rabbit: RabbitHarness,
) -> None:
    url = with_credentials(rabbit.server.url, "guest", "not-the-password")
    with pytest.raises(BrokerUnavailable) as refused:
        await RabbitBroker.connect(url)
    assert "not-the-password" not in str(refused.value)
    assert "ACCESS_REFUSED" in str(refused.value)


async def test_queues_are_durable_quorum_queues_with_the_declared_arguments(
    rabbit: RabbitHarness,
) -> None:
    _, topology = await ready(rabbit, delivery_limit=7)
    session = topology.session_queue(0)
    expected = queue_arguments(topology, session)
    assert expected == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-dead-letter-routing-key": "dead",
    }
    async with await aio_pika.connect(rabbit.server.url) as connection:
        # Redeclaring with the same arguments succeeds; with any other, the broker refuses.
        channel = await connection.channel()
        await channel.declare_queue(session.name, durable=True, arguments=expected)
        await channel.declare_queue(
            topology.dead_letter_queue.name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(session.name, durable=True)


async def test_the_refusal_says_how_to_fix_it(rabbit: RabbitHarness) -> None:
    connection, topology = await ready(rabbit)
    name = topology.session_queue(0).name
    async with await aio_pika.connect(rabbit.server.url) as amqp:
        channel = await amqp.channel()
        await channel.queue_delete(name)
        await channel.declare_queue(name, durable=True)  # a classic queue in the way
    with pytest.raises(BrokerError) as refused:
        await connection.declare(topology)
    assert f"rabbitmqctl delete_queue {name}" in str(refused.value)
    assert "PRECONDITION_FAILED" in str(refused.value)


async def test_messages_are_persistent_json_unless_a_header_says_otherwise(
    rabbit: RabbitHarness,
) -> None:
    connection, topology = await ready(rabbit)
    plain = record(topology, headers={"seq": 1})
    soap = record(topology, headers={"content-type": "application/soap+xml"})
    assert await connection.publish([plain, soap]) == [True, True]
    first = await get_raw(rabbit, topology.session_queue(0).name)
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (first.content_type, first.message_id) == ("application/json", plain.message_id)
    assert first.headers["seq"] == 1
    second = await get_raw(rabbit, topology.session_queue(0).name)
    assert second.content_type == "application/soap+xml"


async def test_without_the_delivery_count_header_redelivered_counts_as_one(
    rabbit: RabbitHarness,
) -> None:
    connection, topology = await ready(rabbit)
    classic = f"{topology.exchange}.classic"
    async with await aio_pika.connect(rabbit.server.url) as amqp:
        channel = await amqp.channel()
        queue = await channel.declare_queue(classic, durable=True)  # counts no deliveries
        await queue.bind(topology.exchange, "classic")
        try:
            await connection.publish([record(topology, "classic")])
            for count in range(2):
                consumer = await connection.consume([classic], prefetch=1)
                [delivery] = await take(consumer, 1)
                assert "x-delivery-count" not in delivery.headers
                assert (delivery.redelivered, delivery.delivery_count) == (count == 1, count)
                await consumer.close()
        finally:
            await channel.queue_delete(classic)


async def test_a_publish_cut_by_a_lost_connection_raises_unavailable(
    rabbit: RabbitHarness,
) -> None:
    connection, topology = await ready(rabbit)
    drop = asyncio.create_task(rabbit.drop_connections())
    try:
        async with asyncio.timeout(WAIT):
            with pytest.raises(BrokerUnavailable):
                while True:  # every batch is fully confirmed until the connection drops
                    assert await connection.publish(numbered(topology, 200)) == [True] * 200
    finally:
        await drop

    async def published() -> bool:
        with contextlib.suppress(BrokerUnavailable):
            return await connection.publish([record(topology)]) == [True]
        return False

    await eventually(published)


async def test_a_confirm_that_takes_too_long_is_not_confirmed(rabbit: RabbitHarness) -> None:
    connection = await rabbit.connect()
    topology = rabbit.topology()
    await connection.declare(topology)
    assert isinstance(connection, RabbitBroker)
    connection.confirm_timeout = 1e-6
    batch: list[OutboxRecord] = numbered(topology, 20)
    assert await connection.publish(batch) == [False] * 20
