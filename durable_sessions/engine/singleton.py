"""The lease of a SINGLE service: one worker process serves it, so it has one instance.

A service with ``Instancing.SINGLE`` (WCF ``InstanceContextMode.Single``) keeps its one instance
in the memory of the worker that serves it, so a second worker process serving it would make a
second singleton. The worker holds the lease ``single:<module:Service>`` in the store instead:
taken before it consumes, renewed every third of ``lease_s`` and in every transaction that
applies the service's messages (a worker that lost its lease commits nothing more), released
when it stops. A second worker refuses to start with :class:`~durable_sessions.errors.
SingletonInUse` once it sees the holder renew; a worker replacing one that crashed waits for
the dead one's lease to run out, then takes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from durable_sessions.errors import SingletonInUse, StoreError, UniquenessViolation
from durable_sessions.model.records import LeaseRecord, utcnow
from durable_sessions.model.services import ServiceSpec
from durable_sessions.store.base import Store, UnitOfWork

log = logging.getLogger(__name__)


class SingletonLease:
    """The lease that lets this worker serve the SINGLE ``service``; see the module docstring."""

    def __init__(
        self,
        store: Store,
        service: ServiceSpec,
        *,
        holder: str,
        lease_s: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.service = service
        self.holder = holder
        self.lease = timedelta(seconds=lease_s)
        self.clock = clock
        self.name = f"single:{service.path}"
        self._stopped = asyncio.Event()

    async def acquire(self) -> None:
        """Take the lease, waiting out one left by a crashed worker; refuse a live holder's."""
        seen: datetime | None = None
        while True:
            now = self.clock()
            try:
                async with self.store.transaction() as uow:
                    lease = await uow.leases.take(self.name, self.holder, now, now + self.lease)
            except UniquenessViolation:
                continue  # another worker inserted it first: look again
            if lease.holder == self.holder:
                return
            if seen is not None and lease.expires_at != seen:
                raise SingletonInUse(self._refusal(lease))
            if seen is None:
                log.info("%s is held by %s: waiting to see it renew", self.name, lease.holder)
            seen = lease.expires_at
            await asyncio.sleep(self.lease.total_seconds() / 10)

    async def hold(self, uow: UnitOfWork, now: datetime) -> None:
        """Renew the lease in ``uow``, the transaction of a batch; raise if it was lost."""
        lease = await uow.leases.take(self.name, self.holder, now, now + self.lease)
        if lease.holder != self.holder:
            raise SingletonInUse(self._lost(lease))

    async def run(self) -> None:
        """Renew the lease every third of its length until :meth:`stop`."""
        interval = self.lease.total_seconds() / 3
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._stopped.wait()
                return
            except TimeoutError:
                pass
            now = self.clock()
            try:
                async with self.store.transaction() as uow:
                    await self.hold(uow, now)
            except StoreError as e:
                log.warning("%s not renewed, trying again in %.1fs: %s", self.name, interval, e)

    async def stop(self) -> None:
        """End :meth:`run` and give the lease up."""
        self._stopped.set()
        try:
            async with self.store.transaction() as uow:
                await uow.leases.release(self.name, self.holder)
        except StoreError as e:
            log.warning("%s not released (it expires by itself): %s", self.name, e)

    def _refusal(self, lease: LeaseRecord) -> str:
        return (
            f"service {self.service.name!r} uses Instancing.SINGLE (one instance for all "
            f"calls), and worker {lease.holder} serves it already (lease {self.name!r}). A second "
            "worker process would have an instance of its own, so this one does not start: "
            "serve the service from one worker process, or use Instancing.PER_SESSION or "
            "Instancing.PER_CALL to serve it from many."
        )

    def _lost(self, lease: LeaseRecord) -> str:
        return (
            f"service {self.service.name!r} uses Instancing.SINGLE and this worker lost its "
            f"lease {self.name!r} to worker {lease.holder} (it was not renewed in time): this "
            "worker stops serving it"
        )
