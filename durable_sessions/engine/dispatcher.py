"""The dispatcher: consume an endpoint's queues, apply each batch in one transaction, settle.

Settlement is one policy in one place: a batch's deliveries are acked (or rejected, for the
REJECT poison policy) only after its transaction committed. When the database is down the batch
is kept, unsettled, and tried again with backoff; nothing is acked that was not committed. On
:meth:`Dispatcher.stop` the batch in progress finishes, deliveries not started stay unsettled
and return to their queues when the consumer closes.

Session queues and the datagram queue are consumed apart. Under ``receive_error_handling``
``fault`` a datagram that exhausts its retries faults the endpoint's datagram listener, as in
WCF: every worker stops taking datagrams (deliveries held back return to the queue) until an
operator resumes it (:mod:`durable_sessions.engine.listeners`); sessions go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
        listener_poll_s: float = 1.0,
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
        self.listener_poll_s = listener_poll_s
        self._consumers: set[Consumer] = set()
        self._busy: set[Consumer] = set()
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def queues(self) -> list[str]:
        """The queues this dispatcher consumes: session queues, datagram queue, or both."""
        endpoint, topology = self.endpoint, self.endpoint.topology
        queues = [q.name for q in topology.session_queues] if endpoint.accepts_sessions else []
        if endpoint.accepts_datagrams:
            queues.append(topology.datagram_queue.name)
        return queues

    async def run(self) -> None:
        """Consume and apply until :meth:`stop`: session queues and datagram queue apart."""
        topology = self.endpoint.topology
        loops: list[Coroutine[Any, Any, object]] = []
        if self.endpoint.accepts_sessions:
            loops.append(self._consume([q.name for q in topology.session_queues]))
        if self.endpoint.accepts_datagrams:
            loops.append(self._listen_for_datagrams(topology.datagram_queue.name))
        if len(loops) == 1:
            await loops[0]
            return
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen_for_datagrams(self, queue: str) -> None:
        """Consume the datagram queue while its listener is not faulted (WCF's
        ``ReceiveErrorHandling.Fault``); while it is, look again every ``listener_poll_s``."""
        while not self._stopping:
            if not await self._listener_held():
                if not await self._consume([queue]):
                    return
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.listener_poll_s):
                    await self._stopped.wait()

    async def _listener_held(self) -> bool:
        """Whether the datagram listener is faulted, or its state cannot be read now."""
        try:
            async with self.store.snapshot() as uow:
                return await uow.listener_faults.get(self.endpoint.name) is not None
        except StoreError as e:
            log.warning(
                "endpoint %s: datagram listener unknown, waiting: %s", self.endpoint.name, e
            )
            return True

    async def _consume(self, queues: list[str]) -> bool:
        """Consume ``queues`` until :meth:`stop` or the consumer ends (False), or until a batch
        finds the datagram listener faulted (True)."""
        consumer = await self.broker.consume(queues, self.throttles.prefetch)
        self._consumers.add(consumer)
        try:
            while not self._stopping:
                batch = await consumer.next_batch(
                    self.throttles.max_batch_size, self.throttles.max_batch_delay_s
                )
                if not batch:
                    break
                self._busy.add(consumer)
                try:
                    faulted = False
                    for part in self._split([Received.decode(d) for d in batch]):
                        faulted = await self._apply_and_settle(consumer, part) or faulted
                finally:
                    self._busy.discard(consumer)
                if faulted:
                    log.warning(
                        "endpoint %s: the datagram listener is faulted; datagrams wait until an "
                        "operator resumes it",
                        self.endpoint.name,
                    )
                    return True
            return False
        finally:
            self._consumers.discard(consumer)
            consumer.drain_unstarted()
            await consumer.close()

    async def stop(self) -> None:
        """Finish the batches in progress, then stop consuming."""
        self._stopping = True
        self._stopped.set()
        for consumer in list(self._consumers - self._busy):
            await consumer.close()

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

    async def _apply_and_settle(self, consumer: Consumer, batch: Sequence[Received]) -> bool:
        """Apply and settle ``batch``; True when it found the datagram listener faulted."""
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
        return outcome.listener_faulted
