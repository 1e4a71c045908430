"""The dispatcher: consume an endpoint's queues, apply each batch in one transaction, settle.

Settlement is one policy in one place: a batch's deliveries are acked (or rejected, for the
REJECT poison policy) only after its transaction committed. When the database is down the batch
is kept, unsettled, and tried again with backoff; nothing is acked that was not committed. On
:meth:`Dispatcher.stop` the batch in progress finishes, deliveries not started stay unsettled
and return to their queues when the consumer closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from durable_sessions.broker.base import Broker, Consumer
from durable_sessions.engine.applying import Applier
from durable_sessions.engine.batches import BatchOutcome, Received, Settlement
from durable_sessions.engine.instancing import InstanceContexts, Throttles
from durable_sessions.engine.outbox import OutboxRelay, publish_after_commit
from durable_sessions.engine.singleton import SingletonLease
from durable_sessions.errors import ConcurrencyConflict, StoreError
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import utcnow
from durable_sessions.model.services import ServiceSpec
from durable_sessions.store.base import Store

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


@dataclass(slots=True)
class DispatchStats:
    """Counters of what a dispatcher did, for metrics and tests."""

    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    dead: int = 0
    failed: int = 0
    retries: int = 0

    def add(self, outcome: BatchOutcome) -> None:
        """Count one committed batch."""
        self.batches += 1
        self.applied += outcome.applied
        self.duplicates += outcome.duplicates
        self.parked += outcome.parked
        self.dead += outcome.dead
        self.failed += outcome.failed


class Dispatcher:
    """Serves one endpoint with one service; see the module docstring.

    ``contexts`` are the worker's instances and throttles, shared by its dispatchers; a SINGLE
    service's ``lease`` is renewed in every batch's transaction, which fails if it was lost.
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        endpoint: Endpoint,
        service: ServiceSpec,
        relay: OutboxRelay | None = None,
        *,
        throttles: Throttles | None = None,
        contexts: InstanceContexts | None = None,
        lease: SingletonLease | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_batch: Callable[[BatchOutcome], None] | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.endpoint = endpoint
        self.relay = relay
        self.throttles = throttles or Throttles()
        self.clock = clock
        self.stats = DispatchStats()
        self._on_batch = on_batch
        self._lease = lease
        self.applier = Applier(
            endpoint, service, contexts=contexts or InstanceContexts(self.throttles)
        )
        self._consumer: Consumer | None = None
        self._stopping = False
        self._busy = False

    @property
    def queues(self) -> list[str]:
        """The queues this dispatcher consumes: session queues, datagram queue, or both."""
        endpoint, topology = self.endpoint, self.endpoint.topology
        queues = [q.name for q in topology.session_queues] if endpoint.accepts_sessions else []
        if endpoint.accepts_datagrams:
            queues.append(topology.datagram_queue.name)
        return queues

    async def run(self) -> None:
        """Consume and apply until :meth:`stop`."""
        consumer = await self.broker.consume(self.queues, self.throttles.prefetch)
        self._consumer = consumer
        try:
            while not self._stopping:
                batch = await consumer.next_batch(
                    self.throttles.max_batch_size, self.throttles.max_batch_delay_s
                )
                if not batch:
                    break
                self._busy = True
                try:
                    for part in self._split([Received.decode(d) for d in batch]):
                        await self._apply_and_settle(consumer, part)
                finally:
                    self._busy = False
        finally:
            consumer.drain_unstarted()
            await consumer.close()

    async def stop(self) -> None:
        """Finish the batch in progress, then stop consuming."""
        self._stopping = True
        if self._consumer is not None and not self._busy:
            await self._consumer.close()

    def _split(self, batch: list[Received]) -> list[list[Received]]:
        limit = self.throttles.sessions_per_batch
        if len(batch) <= limit:
            return [batch]
        parts: list[list[Received]] = [[]]
        sessions: set[str] = set()
        for received in batch:
            key = received.session_key
            if key not in sessions and len(sessions) >= limit:
                parts.append([])
                sessions = set()
            sessions.add(key)
            parts[-1].append(received)
        return parts

    async def _apply_and_settle(self, consumer: Consumer, batch: Sequence[Received]) -> None:
        backoff = 0.05
        while True:
            now = self.clock()
            try:
                async with publish_after_commit(self.store, self.relay, now) as tx:
                    if self._lease is not None:
                        await self._lease.hold(tx.uow, now)
                    outcome = await self.applier.apply(tx, batch, now)
                break
            except ConcurrencyConflict:
                continue
            except StoreError as e:
                self.stats.retries += 1
                log.warning(
                    "endpoint %s: batch of %d not applied, retrying in %.2fs: %s",
                    self.endpoint.name,
                    len(batch),
                    backoff,
                    e,
                )
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
        deliveries = [received.delivery for received in batch]
        rejects = [
            d for i, d in enumerate(deliveries) if outcome.settlements.get(i) is Settlement.REJECT
        ]
        acks = [d for i, d in enumerate(deliveries) if i not in outcome.settlements]
        if rejects:
            await consumer.reject(rejects)
        await consumer.ack(acks)
        self.stats.add(outcome)
        if self._on_batch is not None:
            self._on_batch(outcome)
