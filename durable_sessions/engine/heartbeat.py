"""A worker's heartbeat: its row in the store, renewed every few seconds, gone when it stops.

The dashboard lists the workers seen recently from these rows. A worker that crashed leaves
its row behind; it drops out of "seen recently" by itself, and any beat removes rows older than
:data:`FORGET_AFTER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from durable_sessions.errors import DurableSessionsError
from durable_sessions.model.records import WorkerRecord, utcnow
from durable_sessions.store.base import Store

log = logging.getLogger(__name__)

BEAT_EVERY_S = 5.0
FORGET_AFTER = timedelta(days=1)


class Heartbeat:
    """Writes ``worker_id``'s heartbeat every ``every_s`` seconds until stopped."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        endpoints: Sequence[str],
        *,
        every_s: float = BEAT_EVERY_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store, self.every_s, self.clock = store, every_s, clock
        now = clock()
        self.worker = WorkerRecord(
            worker_id, socket.gethostname(), os.getpid(), tuple(endpoints), now, now
        )
        self._stopping = asyncio.Event()

    async def beat(self) -> None:
        """Record the worker as seen now."""
        now = self.clock()
        self.worker = WorkerRecord(
            self.worker.id,
            self.worker.host,
            self.worker.pid,
            self.worker.endpoints,
            self.worker.started_at,
            now,
        )
        async with self.store.transaction() as uow:
            await uow.workers.beat(self.worker)
            await uow.workers.forget_before(now - FORGET_AFTER)

    async def run(self) -> None:
        """Beat until :meth:`stop`, then remove the worker's row (cancelled, as in a crash, it
        stays). A store that does not answer skips a beat, not the worker."""
        while not self._stopping.is_set():
            try:
                await self.beat()
            except DurableSessionsError as e:
                log.warning("heartbeat of %s not written: %s", self.worker.id, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every_s)
        try:
            async with self.store.transaction() as uow:
                await uow.workers.forget(self.worker.id)
        except DurableSessionsError as e:
            log.warning("heartbeat of %s not removed: %s", self.worker.id, e)

    def stop(self) -> None:
        """Make :meth:`run` end after the beat in progress."""
        self._stopping.set()
