"""One behaviour suite for the broker port: the memory twin and RabbitMQ follow the same rules."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from durable_sessions.broker.base import Delivery
from durable_sessions.errors import BrokerError, BrokerUnavailable, ConfigurationError
from durable_sessions.model.topology import DEAD_KEY
from tests.broker.harness import (
    WAIT,
    BrokerHarness,
    bodies,
    eventually,
    expect_depth,
    nothing_more,
    numbered,
    ready,
    record,
    take,
)

# --- declare ------------------------------------------------------------------------------


async def test_declaring_twice_is_fine_and_every_queue_is_routed(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker, session_queue_count=2)
    await connection.declare(topology)
    keys = [q.routing_key for q in topology.queues]
    assert await connection.publish([record(topology, key) for key in keys]) == [True] * len(keys)
    for queue in topology.queues:
        await expect_depth(broker, queue.name, 1)
    await expect_depth(broker, topology.dead_letter_queue.name, 0)


async def test_a_queue_declared_with_other_arguments_is_refused_by_name(
    broker: BrokerHarness,
) -> None:
    connection, topology = await ready(broker)
    changed = dataclasses.replace(topology, delivery_limit=topology.delivery_limit + 1)
    with pytest.raises(BrokerError) as refused:
        await connection.declare(changed)
    assert topology.session_queue(0).name in str(refused.value)
    assert "delete" in str(refused.value)
    await connection.declare(topology)
    assert await connection.publish([record(topology)]) == [True]


async def test_a_queue_of_its_own_is_reached_through_the_default_exchange(
    broker: BrokerHarness,
) -> None:
    connection, topology = await ready(broker)
    name = f"{topology.exchange}.own"
    message = dataclasses.replace(record(topology), exchange="", routing_key=name)
    try:
        await connection.declare_queue(name)
        await connection.declare_queue(name)
        assert await connection.publish([message]) == [True]
        consumer = await connection.consume([name], prefetch=1)
        (got,) = await take(consumer, 1)
        assert (got.body, got.queue) == (message.body, name)
        await consumer.ack([got])
        await consumer.close()
    finally:
        await connection.delete_queue(name)
    await connection.delete_queue(name)
    assert await connection.publish([message]) == [False]


# --- publish ------------------------------------------------------------------------------


async def test_messages_are_consumed_in_order_with_their_id_and_headers(
    broker: BrokerHarness,
) -> None:
    connection, topology = await ready(broker)
    sent = [
        record(topology, body=f'{{"n": {n}}}'.encode(), headers={"session": "s1", "seq": n})
        for n in range(3)
    ]
    assert await connection.publish(sent) == [True, True, True]
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=10)
    got = await take(consumer, 3)
    assert bodies(got) == [m.body for m in sent]
    assert [d.message_id for d in got] == [m.message_id for m in sent]
    for delivery, message in zip(got, sent, strict=True):
        assert delivery.headers["session"] == "s1"
        assert delivery.headers["seq"] == message.headers["seq"]
        assert delivery.routing_key == "session.0"
        assert delivery.queue == topology.session_queue(0).name
        assert not delivery.redelivered
        assert delivery.delivery_count == 0
    await consumer.ack(got)
    await consumer.close()
    await expect_depth(broker, topology.session_queue(0).name, 0)
    again = await connection.consume([topology.session_queue(0).name], prefetch=10)
    await nothing_more(broker, again)


async def test_a_message_without_an_id_gets_one(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    assert await connection.publish([record(topology, message_id=None)]) == [True]
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=1)
    [delivery] = await take(consumer, 1)
    assert delivery.message_id


async def test_unroutable_messages_are_not_confirmed(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    batch = [record(topology), record(topology, "nowhere"), record(topology)]
    assert await connection.publish(batch) == [True, False, True]
    assert await connection.publish([record(topology, exchange=f"{topology.exchange}.x")]) == [
        False
    ]
    assert await connection.publish([record(topology)]) == [True]
    assert await connection.publish([]) == []
    await expect_depth(broker, topology.session_queue(0).name, 3)


async def test_a_returned_message_is_never_reported_confirmed(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    lost, kept = record(topology, "nowhere"), record(topology)
    twin = dataclasses.replace(kept, message_id=lost.message_id)
    assert await connection.publish([lost, twin]) == [False, True]
    assert await connection.publish([twin, lost]) == [True, False]
    await expect_depth(broker, topology.session_queue(0).name, 2)


async def test_a_large_batch_is_confirmed(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    assert await connection.publish(numbered(topology, 2000)) == [True] * 2000
    await expect_depth(broker, topology.session_queue(0).name, 2000)


# --- consume and settle -------------------------------------------------------------------


async def test_closing_a_consumer_redelivers_with_a_rising_delivery_count(
    broker: BrokerHarness,
) -> None:
    connection, topology = await ready(broker)
    sent = numbered(topology, 2)
    await connection.publish(sent)
    queue = topology.session_queue(0).name
    for count in range(3):
        consumer = await connection.consume([queue], prefetch=10)
        got = await take(consumer, 2)
        assert bodies(got) == [m.body for m in sent]
        assert [d.redelivered for d in got] == [count > 0] * 2
        assert [d.delivery_count for d in got] == [count] * 2
        if count:
            assert [d.headers["x-delivery-count"] for d in got] == [count] * 2
        await consumer.close()
    await expect_depth(broker, queue, 2)


async def test_a_rejected_message_goes_to_the_dead_letter_queue(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    [sent] = numbered(topology, 1)
    await connection.publish([sent])
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=1)
    await consumer.reject(await take(consumer, 1))
    dead = await connection.consume([topology.dead_letter_queue.name], prefetch=1)
    [delivery] = await take(dead, 1)
    assert (delivery.body, delivery.message_id) == (sent.body, sent.message_id)
    assert (delivery.queue, delivery.routing_key) == (topology.dead_letter_queue.name, DEAD_KEY)
    assert delivery.headers["x-first-death-reason"] == "rejected"
    assert delivery.headers["x-first-death-queue"] == topology.session_queue(0).name
    assert (delivery.redelivered, delivery.delivery_count) == (False, 0)
    await nothing_more(broker, consumer)


async def test_a_rejected_message_of_a_queue_without_dead_lettering_is_dropped(
    broker: BrokerHarness,
) -> None:
    connection, topology = await ready(broker)
    await connection.publish([record(topology, topology.poison_queue.routing_key)])
    consumer = await connection.consume([topology.poison_queue.name], prefetch=1)
    await consumer.reject(await take(consumer, 1))
    await consumer.close()
    queues = [topology.poison_queue.name, topology.dead_letter_queue.name]
    await nothing_more(broker, await connection.consume(queues, prefetch=1))


async def test_past_the_delivery_limit_a_message_is_dead_lettered(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker, delivery_limit=1)
    [sent] = numbered(topology, 1)
    await connection.publish([sent])
    for count in range(2):
        consumer = await connection.consume([topology.session_queue(0).name], prefetch=1)
        [delivery] = await take(consumer, 1)
        assert delivery.delivery_count == count
        await consumer.close()
    dead = await connection.consume([topology.dead_letter_queue.name], prefetch=1)
    [delivery] = await take(dead, 1)
    assert delivery.body == sent.body
    assert delivery.headers["x-first-death-reason"] == "delivery_limit"
    await expect_depth(broker, topology.session_queue(0).name, 0)


async def test_prefetch_caps_unsettled_deliveries(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    await connection.publish(numbered(topology, 5))
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=2)
    first = await take(consumer, 2)
    await nothing_more(broker, consumer)
    await consumer.ack(first[:1])
    second = await take(consumer, 1)
    await nothing_more(broker, consumer)
    await consumer.ack([first[1], *second])
    rest = await take(consumer, 2)
    await consumer.ack(rest)
    assert len({d.body for d in [*first, *second, *rest]}) == 5


async def test_two_consumers_share_a_queue(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    sent = numbered(topology, 4)
    await connection.publish(sent)
    queue = topology.session_queue(0).name
    one = await connection.consume([queue], prefetch=1)
    two = await connection.consume([queue], prefetch=1)
    got: list[Delivery] = []
    for _ in range(2):
        pair = [*(await take(one, 1)), *(await take(two, 1))]
        await one.ack(pair[:1])
        await two.ack(pair[1:])
        got += pair
    assert sorted(bodies(got)) == sorted(m.body for m in sent)


async def test_one_consumer_reads_several_queues(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker, session_queue_count=2)
    queues = [topology.session_queue(0), topology.session_queue(1), topology.datagram_queue]
    await connection.publish([record(topology, q.routing_key, q.name.encode()) for q in queues])
    consumer = await connection.consume([q.name for q in queues], prefetch=1)
    got = await take(consumer, 3)
    assert sorted((d.queue, d.body) for d in got) == sorted(
        (q.name, q.name.encode()) for q in queues
    )
    await consumer.ack(got)


async def test_next_batch_takes_up_to_max_size_within_max_wait(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    await connection.publish(numbered(topology, 5))
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=10)
    async with asyncio.timeout(WAIT):
        assert len(await consumer.next_batch(3, WAIT)) == 3
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert len(await consumer.next_batch(10, 0.5)) == 2
    assert loop.time() - started < 2.0
    await consumer.close()
    assert await consumer.next_batch(10, WAIT) == []


async def test_drained_deliveries_stay_unsettled(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    sent = numbered(topology, 3)
    await connection.publish(sent)
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=3)
    started = await take(consumer, 1)
    drained: list[Delivery] = []

    async def all_drained() -> bool:
        drained.extend(consumer.drain_unstarted())
        return len(drained) == 2

    await eventually(all_drained)
    assert bodies([*started, *drained]) == [m.body for m in sent]
    await nothing_more(broker, consumer)
    await consumer.close()
    again = await connection.consume([topology.session_queue(0).name], prefetch=3)
    redelivered = await take(again, 3)
    assert bodies(redelivered) == [m.body for m in sent]
    assert all(d.redelivered for d in redelivered)


async def test_settling_later_deliveries_leaves_earlier_ones_unsettled(
    broker: BrokerHarness,
) -> None:
    connection, topology = await ready(broker)
    sent = numbered(topology, 4)
    await connection.publish(sent)
    queue = topology.session_queue(0).name
    consumer = await connection.consume([queue], prefetch=4)
    first, second, third, fourth = await take(consumer, 4)
    await consumer.ack([third, second])
    await consumer.reject([fourth])
    await consumer.close()
    again = await connection.consume([queue], prefetch=4)
    [redelivered] = await take(again, 1)
    assert (redelivered.body, redelivered.delivery_count) == (first.body, 1)
    await nothing_more(broker, again)
    dead = await connection.consume([topology.dead_letter_queue.name], prefetch=4)
    assert bodies(await take(dead, 1)) == [fourth.body]


async def test_settling_twice_or_after_close_does_nothing(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    sent = numbered(topology, 3)
    await connection.publish(sent)
    queue = topology.session_queue(0).name
    consumer = await connection.consume([queue], prefetch=3)
    first, second, third = await take(consumer, 3)
    await consumer.ack([first])
    await consumer.ack([first])
    await consumer.reject([first])
    await consumer.ack([second])  # the channel survived the repeated settlements
    await consumer.close()
    await consumer.ack([third])
    await consumer.reject([third])
    again = await connection.consume([queue], prefetch=3)
    [redelivered] = await take(again, 1)
    assert (redelivered.body, redelivered.redelivered) == (sent[2].body, True)
    await nothing_more(broker, again)
    dead = await connection.consume([topology.dead_letter_queue.name], prefetch=1)
    await nothing_more(broker, dead)


async def test_consume_and_settle_refuse_bad_arguments(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    with pytest.raises(BrokerError, match="does not exist"):
        await connection.consume([f"{topology.exchange}.missing"], prefetch=1)
    with pytest.raises(ConfigurationError):
        await connection.consume([topology.session_queue(0).name], prefetch=0)
    with pytest.raises(ConfigurationError):
        await connection.consume([], prefetch=1)
    assert await connection.publish([record(topology)]) == [True]  # the connection carries on
    queue = topology.session_queue(0).name
    consumer = await connection.consume([queue], prefetch=1)
    other = await connection.consume([queue], prefetch=1)
    stranger = Delivery(b"", {}, "session.0", queue, False, 0)
    with pytest.raises(ConfigurationError):
        await consumer.ack([stranger])
    with pytest.raises(ConfigurationError):
        await other.reject(await take(consumer, 1))


# --- connection -----------------------------------------------------------------------------


async def test_a_closed_connection_is_unavailable(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    await connection.ping()
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=1)
    await connection.close()
    assert await consumer.next_batch(1, WAIT) == []
    with pytest.raises(BrokerUnavailable):
        await connection.ping()
    with pytest.raises(BrokerUnavailable):
        await connection.publish([record(topology)])
    with pytest.raises(BrokerUnavailable):
        await connection.declare(topology)
    with pytest.raises(BrokerUnavailable):
        await connection.consume([topology.session_queue(0).name], prefetch=1)
    await connection.close()


async def test_consumption_resumes_after_the_broker_drops_connections(
    broker: BrokerHarness,
) -> None:
    connection, topology = await ready(broker)
    sent = numbered(topology, 3)
    await connection.publish(sent)
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=2)
    before = await take(consumer, 2)
    await broker.drop_connections()
    await consumer.ack(before)  # their channel is gone: the broker delivers them again
    after = await take(consumer, 2)
    assert bodies(after) == bodies(before)
    assert [(d.redelivered, d.delivery_count) for d in after] == [(True, 1)] * 2
    await nothing_more(broker, consumer)  # the prefetch came back with the consumer
    await consumer.ack(after)
    [third] = await take(consumer, 1)
    assert (third.body, third.redelivered) == (sent[2].body, False)
    [late] = numbered(topology, 1)
    assert await connection.publish([late]) == [True]
    [delivery] = await take(consumer, 1)
    assert delivery.body == late.body
    await consumer.ack([third, delivery])
    await consumer.close()
    again = await connection.consume([topology.session_queue(0).name], prefetch=10)
    await nothing_more(broker, again)


async def test_an_unreachable_broker_raises_broker_unavailable(broker: BrokerHarness) -> None:
    connection, topology = await ready(broker)
    consumer = await connection.consume([topology.session_queue(0).name], prefetch=10)

    async def down() -> bool:
        try:
            await connection.ping()
        except BrokerUnavailable:
            return True
        return False

    async with broker.outage():
        await eventually(down)
        with pytest.raises(BrokerUnavailable):
            await connection.publish([record(topology)])
        with pytest.raises(BrokerUnavailable):
            await connection.declare(topology)
        with pytest.raises(BrokerUnavailable):
            await connection.consume([topology.session_queue(0).name], prefetch=1)

    async def up() -> bool:
        return not await down()

    await eventually(up)
    [sent] = numbered(topology, 1)
    assert await connection.publish([sent]) == [True]
    [delivery] = await take(consumer, 1)
    assert delivery.body == sent.body
    await consumer.ack([delivery])
