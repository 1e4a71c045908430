"""A relay that does what the broker is allowed to do: deliver late, early, and twice.

It takes the outbox entries of a run for itself (a claim that outlasts the test, so no other
relay touches them), publishes them in the order a test chooses, copies included, and removes
them from the outbox afterwards, as a relay does once the broker confirmed them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta

from durable_sessions.broker.base import Broker
from durable_sessions.model.records import OutboxRecord, utcnow
from durable_sessions.model.wire import WireMessage
from durable_sessions.store.base import Store

OWNER = "e2e-chaos-relay"
CLAIM = timedelta(hours=1)
BATCH = 1000


class ChaosRelay:
    """Publishes a run's outbox entries out of order and more than once."""

    def __init__(self, store: Store, broker: Broker, rng: random.Random) -> None:
        self.store = store
        self.broker = broker
        self.rng = rng
        self.published = 0

    async def take(self) -> dict[str, list[OutboxRecord]]:
        """Claim every entry of the outbox; each session's entries, in seq order."""
        taken: list[OutboxRecord] = []
        while True:
            now = utcnow()
            async with self.store.transaction() as uow:
                batch = await uow.outbox.claim(OWNER, now, now + CLAIM, BATCH)
            if not batch:
                break
            taken += batch
        by_session: dict[str, list[tuple[int, OutboxRecord]]] = {}
        for entry in taken:
            wire = WireMessage.decode(entry.body)
            assert wire.session_id is not None, wire
            assert wire.seq is not None, wire
            by_session.setdefault(wire.session_id, []).append((wire.seq, entry))
        return {sid: [e for _, e in sorted(pairs)] for sid, pairs in by_session.items()}

    def backwards(self, entries: Sequence[OutboxRecord], copies: int) -> list[OutboxRecord]:
        """``entries`` last first, with ``copies`` of them (drawn at random) published again.

        Half the copies follow their original at once, so that two workers are likely to get
        the same message at the same moment; the others go anywhere.
        """
        order = list(reversed(entries))
        for entry in self.rng.choices(list(entries), k=copies):
            if self.rng.random() < 0.5:
                at = order.index(entry) + 1
            else:
                at = self.rng.randrange(len(order) + 1)
            order.insert(at, entry)
        return order

    def interleave(self, streams: Sequence[Sequence[OutboxRecord]]) -> list[OutboxRecord]:
        """One publishing order that keeps each stream's order and mixes the streams."""
        pending = [list(stream) for stream in streams if stream]
        mixed: list[OutboxRecord] = []
        while pending:
            stream = self.rng.choice(pending)
            mixed.append(stream.pop(0))
            if not stream:
                pending.remove(stream)
        return mixed

    async def publish(self, entries: Sequence[OutboxRecord]) -> None:
        """Publish ``entries`` in this order; every one must be confirmed."""
        confirmed = await self.broker.publish(entries)
        assert all(confirmed), f"{confirmed.count(False)} of {len(entries)} not confirmed"
        self.published += len(entries)

    async def release(self, entries: Sequence[OutboxRecord]) -> None:
        """Remove published entries from the outbox."""
        async with self.store.transaction() as uow:
            await uow.outbox.remove([e.id for e in entries if e.id is not None])
