"""The memory broker's test helpers: what users' tests use to bend the broker's behaviour."""

from __future__ import annotations

import pytest

from durable_sessions.errors import BrokerError
from durable_sessions.memory_broker import MemoryBroker
from durable_sessions.topology import EndpointTopology
from tests.transport.harness import bodies, numbered, take


async def test_publish_raw_injects_duplicates_and_reordering() -> None:
    broker = MemoryBroker()
    transport = broker.connect()
    topology = EndpointTopology("raw")
    await transport.declare(topology)
    first, second = numbered(topology, 2)
    assert broker.publish_raw(topology.exchange, "session.0", second.body, {"seq": 2})
    assert await transport.publish([first]) == [True]
    assert broker.publish_raw(
        topology.exchange, "session.0", second.body, {"seq": 2}, message_id="same"
    )
    assert not broker.publish_raw(topology.exchange, "nowhere", b"{}")
    assert broker.queue_depth(topology.session_queue(0).name) == 3
    consumer = await transport.consume([topology.session_queue(0).name], prefetch=10)
    got = await take(consumer, 3)
    assert bodies(got) == [second.body, first.body, second.body]
    assert [d.headers.get("seq") for d in got] == [2, None, 2]
    assert got[2].message_id == "same"
    await transport.close()


async def test_depth_and_unsettled_count_follow_deliveries() -> None:
    broker = MemoryBroker()
    transport = broker.connect()
    topology = EndpointTopology("counts")
    await transport.declare(topology)
    queue = topology.session_queue(0).name
    await transport.publish(numbered(topology, 3))
    consumer = await transport.consume([queue], prefetch=2)
    assert (broker.queue_depth(queue), broker.unsettled_count(queue)) == (1, 2)
    await consumer.ack(await take(consumer, 1))
    assert (broker.queue_depth(queue), broker.unsettled_count(queue)) == (0, 2)
    await consumer.close()
    assert (broker.queue_depth(queue), broker.unsettled_count(queue)) == (2, 0)
    with pytest.raises(BrokerError, match="does not exist"):
        broker.queue_depth("missing")
