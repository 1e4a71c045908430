"""A runtime: serves services in this process with dispatchers, an outbox relay and a sweeper.

``workers/`` runs one per worker process on the SQL store and RabbitMQ; tests and users' own
test suites run one on the in-memory store and broker (:func:`durable_sessions.testing.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from types import TracebackType

from durable_sessions.applying import BatchOutcome
from durable_sessions.client import Client
from durable_sessions.dispatcher import Dispatcher, Throttles
from durable_sessions.endpoints import Endpoint, Endpoints
from durable_sessions.records import utcnow
from durable_sessions.relay import OutboxRelay
from durable_sessions.services import ServiceSpec
from durable_sessions.store import Store
from durable_sessions.sweeper import Sweeper
from durable_sessions.transport import Transport
from durable_sessions.wsrm.settings import ReliableSessionSettings

log = logging.getLogger(__name__)


class Runtime:
    """Dispatchers for the served endpoints, plus a relay and a sweeper; start, then stop."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        served: Sequence[tuple[Endpoint, ServiceSpec]],
        *,
        known: Sequence[Endpoint] = (),
        throttles: Throttles | None = None,
        sweep_interval_s: float = 1.0,
        reliable: ReliableSessionSettings | None = None,
        relay_poll_interval_s: float = 1.0,
        relay_lease_s: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
        on_batch: Callable[[str, BatchOutcome], None] | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        served_names = {endpoint.name for endpoint, _ in served}
        self.endpoints = Endpoints(
            [e for e, _ in served] + [e for e in known if e.name not in served_names]
        )
        self.relay = OutboxRelay(
            store,
            transport,
            poll_interval_s=relay_poll_interval_s,
            lease_s=relay_lease_s,
            clock=clock,
        )
        self.sweeper = Sweeper(
            store,
            self.endpoints,
            self.relay,
            interval_s=sweep_interval_s,
            reliable=reliable,
            clock=clock,
        )
        self.dispatchers = [
            Dispatcher(
                store,
                transport,
                endpoint,
                service,
                self.relay,
                throttles=throttles,
                clock=clock,
                on_batch=None if on_batch is None else partial(on_batch, endpoint.name),
            )
            for endpoint, service in served
        ]
        self.client = Client(store, self.endpoints, self.relay, clock=clock)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Declare every endpoint's topology and start consuming."""
        for endpoint in self.endpoints.values():
            await self.transport.declare(endpoint.topology)
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="outbox-relay"),
            asyncio.create_task(self.sweeper.run(), name="sweeper"),
            *(
                asyncio.create_task(d.run(), name=f"dispatcher-{d.endpoint.name}")
                for d in self.dispatchers
            ),
        ]

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

    async def abort(self) -> None:
        """Stop at once, as a crash would: cancel everything, settle and publish nothing more."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.transport.close()

    async def wait(self) -> None:
        """Run until a task fails (raising its error) or all stop."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
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
