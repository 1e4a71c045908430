"""The memory broker's test helpers: what users' tests use to bend the broker's behaviour."""

from __future__ import annotations

import pytest

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.errors import BrokerError
from durable_sessions.model.topology import EndpointTopology
from tests.broker.harness import bodies, numbered, take


async def test_publish_raw_injects_duplicates_and_reordering() -> None:
    node = MemoryNode()
    broker = node.connect()
    topology = EndpointTopology("raw")
    await broker.declare(topology)
    first, second = numbered(topology, 2)
    assert node.publish_raw(topology.exchange, "session.0", second.body, {"seq": 2})
    assert await broker.publish([first]) == [True]
    assert node.publish_raw(
        topology.exchange, "session.0", second.body, {"seq": 2}, message_id="same"
    )
    assert not node.publish_raw(topology.exchange, "nowhere", b"{}")
    assert node.queue_depth(topology.session_queue(0).name) == 3
    consumer = await broker.consume([topology.session_queue(0).name], prefetch=10)
    got = await take(consumer, 3)
    assert bodies(got) == [second.body, first.body, second.body]
    assert [d.headers.get("seq") for d in got] == [2, None, 2]
    assert got[2].message_id == "same"
    await broker.close()


async def test_depth_and_unsettled_count_follow_deliveries() -> None:
    node = MemoryNode()
    broker = node.connect()
    topology = EndpointTopology("counts")
    await broker.declare(topology)
    queue = topology.session_queue(0).name
    await broker.publish(numbered(topology, 3))
    consumer = await broker.consume([queue], prefetch=2)
    assert (node.queue_depth(queue), node.unsettled_count(queue)) == (1, 2)
    await consumer.ack(await take(consumer, 1))
    assert (node.queue_depth(queue), node.unsettled_count(queue)) == (0, 2)
    await consumer.close()
    assert (node.queue_depth(queue), node.unsettled_count(queue)) == (2, 0)
    with pytest.raises(BrokerError, match="does not exist"):
        node.queue_depth("missing")
