"""Batching in the broker port's Consumer: sizes, waits, and cancellation that is never lost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from durable_sessions.broker.base import Consumer, Delivery


class Bare(Consumer):
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        return None

    async def reject(self, deliveries: Sequence[Delivery]) -> None:
        return None

    async def close(self) -> None:
        self._stop()


def delivery(n: int) -> Delivery:
    return Delivery(bytes([n]), {}, "k", "q", redelivered=False, delivery_count=0)


async def test_a_batch_is_what_arrives_within_the_wait() -> None:
    consumer = Bare()
    for n in range(5):
        consumer._deliver(delivery(n))
    assert [d.body for d in await consumer.next_batch(3, 0.01)] == [b"\x00", b"\x01", b"\x02"]
    assert len(await consumer.next_batch(10, 0.01)) == 2
    await consumer.close()
    assert await consumer.next_batch(10, 0.01) == []


async def test_deliveries_waiting_already_are_a_batch_at_once() -> None:
    consumer = Bare()
    for n in range(3):
        consumer._deliver(delivery(n))
    async with asyncio.timeout(1.0):
        assert len(await consumer.next_batch(10, 60.0)) == 3


async def test_an_idle_consumer_waits_for_more_after_the_first() -> None:
    consumer = Bare()
    waiting = asyncio.create_task(consumer.next_batch(10, 0.2))
    await asyncio.sleep(0.01)
    consumer._deliver(delivery(0))
    await asyncio.sleep(0.05)
    consumer._deliver(delivery(1))
    assert len(await waiting) == 2


async def test_a_cancel_is_never_swallowed_when_a_delivery_arrives_at_the_same_time() -> None:
    consumer = Bare()
    waiting = asyncio.create_task(consumer.next_batch(10, 5.0))
    await asyncio.sleep(0.01)
    consumer._deliver(delivery(0))
    await asyncio.sleep(0.01)  # it has the first delivery and waits for more
    consumer._deliver(delivery(1))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
