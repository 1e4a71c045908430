"""The outbox relay: batches in flight at once, and nothing left in the outbox once confirmed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from durable_sessions.memory import MemoryStore
from durable_sessions.records import OutboxRecord, utcnow
from durable_sessions.relay import OutboxRelay


class GatedTransport:
    """Takes publishes at once and confirms none of them until the gate opens."""

    def __init__(self) -> None:
        self.taken: asyncio.Queue[list[str | None]] = asyncio.Queue()
        self.gate = asyncio.Event()

    async def publish(self, entries: Sequence[OutboxRecord]) -> list[bool]:
        self.taken.put_nowait([e.message_id for e in entries])
        await self.gate.wait()
        return [True] * len(entries)

    async def next_batch(self) -> list[str | None]:
        async with asyncio.timeout(5):
            return await self.taken.get()


async def test_a_batch_awaiting_its_confirms_does_not_hold_up_the_next() -> None:
    store, transport = MemoryStore(), GatedTransport()
    relay = OutboxRelay(store, transport, batch_size=2, poll_interval_s=60)  # type: ignore[arg-type]
    claim = relay.claim(utcnow())
    written = [
        OutboxRecord(
            exchange="ds.x",
            routing_key="k",
            body=b"{}",
            created_at=utcnow(),
            message_id=f"m{n}",
            claimed_by=claim.owner,
            claimed_until=claim.until,
        )
        for n in range(4)
    ]
    async with store.transaction() as uow:
        entries = await uow.outbox.add_many(written)
    running = asyncio.create_task(relay.run())
    relay.submit(entries[:2])
    assert await transport.next_batch() == ["m0", "m1"]
    relay.submit(entries[2:])
    assert await transport.next_batch() == ["m2", "m3"]  # while the first awaits its confirms
    transport.gate.set()
    await relay.drain(timeout_s=5)
    async with store.snapshot() as uow:
        assert (await uow.outbox.stats()).count == 0
    assert relay.published == 4
    await relay.stop()
    await running
