"""A runtime: serves services in this process with dispatchers, an outbox relay, a sweeper and
a heartbeat (:mod:`~durable_sessions.engine.heartbeat`).

``workers/`` runs one per worker process on the SQL store and RabbitMQ; tests and users' own
test suites run one on the in-memory store and broker
(:func:`~durable_sessions.hosting.testing.run_in_memory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from types import TracebackType

from durable_sessions.broker.base import Broker
from durable_sessions.engine.batches import BatchOutcome
from durable_sessions.engine.client import Client
from durable_sessions.engine.dispatcher import Dispatcher
from durable_sessions.engine.heartbeat import BEAT_EVERY_S, Heartbeat
from durable_sessions.engine.instancing import InstanceContexts, Throttles
from durable_sessions.engine.outbox import OutboxRelay
from durable_sessions.engine.singleton import SingletonLease
from durable_sessions.engine.sweeper import Sweeper, Wakeups
from durable_sessions.model.endpoints import Endpoint, Endpoints
from durable_sessions.model.records import utcnow
from durable_sessions.model.services import Instancing, ServiceSpec
from durable_sessions.store.base import Store

log = logging.getLogger(__name__)


class Runtime:
    """Dispatchers for the served endpoints, plus a relay and a sweeper; start, then stop.

    ``wakeups`` is what the sweeper wakes first: the reliable-session binding's sequences. A
    faulted datagram listener is looked at again every ``sweep_interval_s``.
    The dispatchers share one :class:`~durable_sessions.engine.instancing.InstanceContexts`
    (the worker's instances and throttles), and a SINGLE service is served only while this
    runtime holds its lease (:mod:`~durable_sessions.engine.singleton`): :meth:`start` raises
    :class:`~durable_sessions.errors.SingletonInUse` if another runtime serves it.
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        served: Sequence[tuple[Endpoint, ServiceSpec]],
        *,
        known: Sequence[Endpoint] = (),
        throttles: Throttles | None = None,
        sweep_interval_s: float = 1.0,
        wakeups: Wakeups | None = None,
        relay_poll_interval_s: float = 1.0,
        relay_lease_s: float = 30.0,
        singleton_lease_s: float = 30.0,
        heartbeat_s: float = BEAT_EVERY_S,
        clock: Callable[[], datetime] = utcnow,
        on_batch: Callable[[str, BatchOutcome], None] | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        served_names = {endpoint.name for endpoint, _ in served}
        self.endpoints = Endpoints(
            [e for e, _ in served] + [e for e in known if e.name not in served_names]
        )
        self.relay = OutboxRelay(
            store,
            broker,
            poll_interval_s=relay_poll_interval_s,
            lease_s=relay_lease_s,
            clock=clock,
        )
        self.sweeper = Sweeper(
            store,
            self.endpoints,
            self.relay,
            interval_s=sweep_interval_s,
            wakeups=wakeups,
            clock=clock,
        )
        self.contexts = InstanceContexts(throttles)
        self.leases = {
            service.path: SingletonLease(
                store, service, holder=self.relay.owner, lease_s=singleton_lease_s, clock=clock
            )
            for _, service in served
            if service.instancing is Instancing.SINGLE
        }
        self.dispatchers = [
            Dispatcher(
                store,
                broker,
                endpoint,
                service,
                self.relay,
                throttles=throttles,
                contexts=self.contexts,
                lease=self.leases.get(service.path),
                clock=clock,
                on_batch=None if on_batch is None else partial(on_batch, endpoint.name),
                listener_poll_s=sweep_interval_s,
            )
            for endpoint, service in served
        ]
        self.client = Client(store, self.endpoints, self.relay, clock=clock)
        self.heartbeat = Heartbeat(
            store, self.relay.owner, [e.name for e, _ in served], every_s=heartbeat_s, clock=clock
        )
        self._beating: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._renewals: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Take the SINGLE services' leases, declare every endpoint's topology, consume."""
        for lease in self.leases.values():
            await lease.acquire()
        self._renewals = [
            asyncio.create_task(lease.run(), name=f"lease-{lease.name}")
            for lease in self.leases.values()
        ]
        for endpoint in self.endpoints.values():
            await self.broker.declare(endpoint.topology)
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="outbox-relay"),
            asyncio.create_task(self.sweeper.run(), name="sweeper"),
            *(
                asyncio.create_task(d.run(), name=f"dispatcher-{d.endpoint.name}")
                for d in self.dispatchers
            ),
        ]
        self._beating = asyncio.create_task(self.heartbeat.run(), name="heartbeat")

    async def stop(self) -> None:
        """Finish the batches in progress, publish what they produced, then stop."""
        for dispatcher in self.dispatchers:
            await dispatcher.stop()
        await self.sweeper.stop()
        await asyncio.gather(*self._tasks[2:], return_exceptions=True)
        await self.relay.drain(timeout_s=5.0)
        await self.relay.stop()
        for task in self._tasks[:2]:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(10.0):
                    await task
        self._tasks = []
        for lease in self.leases.values():
            await lease.stop()
        await asyncio.gather(*self._renewals, return_exceptions=True)
        self._renewals = []
        if self._beating is not None:
            self.heartbeat.stop()
            await self._beating
            self._beating = None

    async def abort(self) -> None:
        """Stop at once, as a crash would: cancel everything, settle and publish nothing more."""
        beating = [] if self._beating is None else [self._beating]
        for task in [*self._tasks, *self._renewals, *beating]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._renewals, *beating, return_exceptions=True)
        self._tasks, self._renewals, self._beating = [], [], None
        await self.broker.close()

    async def wait(self) -> None:
        """Run until a task fails (raising its error) or all stop."""
        done, _ = await asyncio.wait(
            [*self._tasks, *self._renewals], return_when=asyncio.FIRST_EXCEPTION
        )
        for task in done:
            task.result()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
