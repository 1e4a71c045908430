"""Instance contexts of one worker: instancing, concurrency and WCF's three service throttles.

A worker's endpoints share one :class:`InstanceContexts`. It hands every call its instance by
the service's ``Instancing`` (WCF ``InstanceContextMode``): a fresh one per call, the session's
restored state, or the one singleton of the worker, whose calls run one at a time under
``Concurrency.SINGLE`` (WCF ``ConcurrencyMode.Single``). And it holds the worker to the limits
of WCF's ``ServiceThrottlingBehavior``, each a :class:`Gate` that makes the excess wait:

- ``max_concurrent_calls`` (16 x CPUs): handler calls running at once;
- ``max_concurrent_sessions`` (100 x CPUs): sessions being served at once, from the moment a
  batch takes up a session until its part of the batch is done;
- ``max_concurrent_instances`` (their sum): instances alive at once: a session's while it is
  served, a PER_CALL instance for its call, the singleton for the worker's life.

Gates are taken in that order (session, instance, singleton lock, call) and each at most once
by a session's chain or a datagram, so a full gate makes work wait and never deadlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from durable_sessions.model.services import Concurrency, Instancing, ServiceSpec

log = logging.getLogger(__name__)

CPUS = os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Throttles:
    """Limits of one worker: batching, prefetch, and WCF's service throttles.

    ``max_concurrent_instances`` defaults, as in WCF, to the sum of the other two throttles.
    """

    max_batch_size: int = 256
    """Most deliveries applied in one transaction."""
    max_batch_delay_s: float = 0.001
    """Longest wait for more deliveries once one arrived at an idle worker."""
    sessions_per_batch: int = 128
    """Most sessions in one transaction; a batch with more is applied in parts."""
    prefetch: int = 512
    """Most unsettled deliveries per queue: the broker's cap."""
    max_concurrent_calls: int = 16 * CPUS
    """WCF ``MaxConcurrentCalls``: handler calls running at once in the worker."""
    max_concurrent_sessions: int = 100 * CPUS
    """WCF ``MaxConcurrentSessions``: sessions being served at once in the worker."""
    max_concurrent_instances: int | None = None
    """WCF ``MaxConcurrentInstances``: instances alive at once (None: calls + sessions)."""

    def __post_init__(self) -> None:
        for name in (
            "max_batch_size",
            "sessions_per_batch",
            "prefetch",
            "max_concurrent_calls",
            "max_concurrent_sessions",
            "max_concurrent_instances",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(
                    f"Throttle limit must be greater than zero ({name}). To disable, set it "
                    "to a large value."
                )

    @property
    def instances(self) -> int:
        """The instance limit in force."""
        if self.max_concurrent_instances is not None:
            return self.max_concurrent_instances
        return self.max_concurrent_calls + self.max_concurrent_sessions


class Gate:
    """At most ``limit`` holders at once; the rest wait. Counts holders and the most seen."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._free = asyncio.Semaphore(limit)
        self._warned = False

    async def acquire(self) -> None:
        """Wait for a free place and take it."""
        if self._free.locked() and not self._warned:
            self._warned = True  # as WCF, say so the first time the throttle holds work back
            log.warning("throttle %s (%d) reached: further work waits", self.name, self.limit)
        await self._free.acquire()
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def release(self) -> None:
        """Give a place back."""
        self.in_use -= 1
        self._free.release()

    async def __aenter__(self) -> Gate:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _Singleton:
    """A service's one instance in this worker and the lock its SINGLE calls take."""

    def __init__(self, service: ServiceSpec) -> None:
        self.instance = service.new_instance()
        self.lock: asyncio.Lock | None = (
            asyncio.Lock() if service.concurrency is Concurrency.SINGLE else None
        )

    def get(self) -> Any:
        """The instance: every attempt of every call gets the same one."""
        return self.instance


class InstanceContexts:
    """The instances of one worker's services, within its throttles; see the module docstring."""

    def __init__(self, throttles: Throttles | None = None) -> None:
        limits = throttles or Throttles()
        self.calls = Gate("max_concurrent_calls", limits.max_concurrent_calls)
        self.sessions = Gate("max_concurrent_sessions", limits.max_concurrent_sessions)
        self.instances = Gate("max_concurrent_instances", limits.instances)
        self._singletons: dict[str, _Singleton] = {}
        self._creating = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def session(self, service: ServiceSpec) -> AsyncIterator[None]:
        """Serve one session: a place among the sessions, and its instance if PER_SESSION."""
        async with self.sessions:
            if service.instancing is Instancing.PER_SESSION:
                async with self.instances:
                    yield
            else:
                yield

    @contextlib.asynccontextmanager
    async def call(
        self,
        service: ServiceSpec,
        state: Mapping[str, Any] | None,
        *,
        in_session: bool,
    ) -> AsyncIterator[Callable[[], Any]]:
        """Make one call: yields what gives each attempt its instance.

        In a session, a PER_SESSION instance is restored from ``state`` (its place was taken
        by :meth:`session`); outside one it is a call of its own, as PER_CALL.
        """
        async with contextlib.AsyncExitStack() as stack:
            if service.instancing is Instancing.SINGLE:
                singleton = await self._singleton(service)
                if singleton.lock is not None:
                    await stack.enter_async_context(singleton.lock)
                factory: Callable[[], Any] = singleton.get
            elif service.instancing is Instancing.PER_SESSION and in_session:
                factory = functools.partial(service.restore, state)
            else:
                await stack.enter_async_context(self.instances)
                factory = service.new_instance
            await stack.enter_async_context(self.calls)
            yield factory

    async def _singleton(self, service: ServiceSpec) -> _Singleton:
        found = self._singletons.get(service.path)
        if found is None:
            async with self._creating:
                found = self._singletons.get(service.path)
                if found is None:
                    await self.instances.acquire()  # held for the worker's life, as in WCF
                    found = self._singletons[service.path] = _Singleton(service)
        return found
