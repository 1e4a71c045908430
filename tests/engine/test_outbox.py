"""The outbox relay on the in-memory store and broker: when submitted entries go out."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest

from durable_sessions.broker.base import Broker
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.outbox import Claim, OutboxRelay, publish_after_commit
from durable_sessions.model.records import OutboxRecord, utcnow
from durable_sessions.store import memory
from durable_sessions.store.memory import MemoryStore

QUEUE = "relay-test"


async def relay_parts() -> tuple[MemoryStore, MemoryNode, Broker]:
    """A store, a memory node with the test queue, and a connection to it."""
    node = MemoryNode()
    broker = node.connect()
    await broker.declare_queue(QUEUE)
    return MemoryStore(), node, broker


def entry(n: int, claim: Claim | None) -> OutboxRecord:
    """Outbox entry number ``n`` to the test queue, held by ``claim``."""
    return OutboxRecord(
        exchange="",
        routing_key=QUEUE,
        body=b"x",
        created_at=utcnow(),
        headers={"n": n},
        message_id=f"m{n}",
        claimed_by=None if claim is None else claim.owner,
        claimed_until=None if claim is None else claim.until,
    )


async def write_and_submit(store: MemoryStore, relay: OutboxRelay, n: int) -> None:
    """Write one outbox entry in a transaction that hands it to the relay once committed."""
    async with publish_after_commit(store, relay, utcnow()) as tx:
        await tx.publish([entry(n, tx.claim)])


async def test_a_transaction_that_rolls_back_hands_nothing_to_the_relay() -> None:
    store, node, broker = await relay_parts()
    relay = OutboxRelay(store, broker, poll_interval_s=60.0)
    running = asyncio.create_task(relay.run())
    try:
        with pytest.raises(RuntimeError, match="rolled back"):
            async with publish_after_commit(store, relay, utcnow()) as tx:
                await tx.publish([entry(1, tx.claim)])
                raise RuntimeError("rolled back")
        await write_and_submit(store, relay, 2)
        await relay.drain(2.0)
        assert node.queue_depth(QUEUE) == 1
        async with store.snapshot() as uow:
            assert (await uow.outbox.stats()).count == 0
    finally:
        await relay.stop()
        await running


async def test_entries_submitted_while_confirmed_ones_are_removed_go_out_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, node, broker = await relay_parts()
    removing, release = asyncio.Event(), asyncio.Event()
    remove = OutboxRelay._remove_published

    async def held_remove(self: OutboxRelay) -> None:
        removing.set()
        await release.wait()
        await remove(self)

    monkeypatch.setattr(OutboxRelay, "_remove_published", held_remove)
    relay = OutboxRelay(store, broker, poll_interval_s=60.0)
    running = asyncio.create_task(relay.run())
    try:
        await write_and_submit(store, relay, 1)
        await asyncio.wait_for(removing.wait(), 5.0)
        await write_and_submit(store, relay, 2)
        release.set()
        await relay.drain(2.0)
        assert node.queue_depth(QUEUE) == 2
        async with store.snapshot() as uow:
            assert (await uow.outbox.stats()).count == 0
    finally:
        release.set()
        await relay.stop()
        await running


async def test_entries_confirmed_close_together_are_removed_in_one_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, node, broker = await relay_parts()
    removals: list[int] = []
    remove = memory._Outbox.remove

    async def counted_remove(self: memory._Outbox, ids: Collection[int]) -> None:
        removals.append(len(ids))
        await remove(self, ids)

    monkeypatch.setattr(memory._Outbox, "remove", counted_remove)
    relay = OutboxRelay(store, broker, poll_interval_s=60.0, remove_every_s=0.3)
    running = asyncio.create_task(relay.run())
    try:
        for n in range(1, 6):
            await write_and_submit(store, relay, n)
            await asyncio.sleep(0.02)  # each one published on its own
        await relay.drain(2.0)
        assert node.queue_depth(QUEUE) == 5
        assert removals == [5]
        async with store.snapshot() as uow:
            assert (await uow.outbox.stats()).count == 0
    finally:
        await relay.stop()
        await running
