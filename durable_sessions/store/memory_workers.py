"""The in-memory twin's workers' heartbeats (a part of :mod:`durable_sessions.store.memory`).

It works on the twin's transaction through :class:`Work`, the little of it it needs, so the
twin imports this module and not the reverse.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from durable_sessions.model.records import WorkerRecord
from durable_sessions.store.base import WorkerRepository


class Work(Protocol):
    """What the heartbeats use of the twin's transaction."""

    tables: Any

    def check(self) -> None:
        """Raise if the transaction is spoiled."""

    def table(self, name: str) -> Any:
        """A table to write to."""


class MemoryWorkers(WorkerRepository):
    """Heartbeats by worker id."""

    def __init__(self, work: Work) -> None:
        self._w = work

    async def beat(self, worker: WorkerRecord) -> None:
        self._w.table("workers")[worker.id] = worker

    async def seen_since(self, since: datetime) -> list[WorkerRecord]:
        self._w.check()
        workers: dict[str, WorkerRecord] = self._w.tables.workers
        return sorted((w for w in workers.values() if w.seen_at >= since), key=lambda w: w.id)

    async def forget(self, worker_id: str) -> None:
        self._w.table("workers").pop(worker_id, None)

    async def forget_before(self, before: datetime) -> None:
        table: dict[str, WorkerRecord] = self._w.table("workers")
        for worker_id in [w.id for w in table.values() if w.seen_at < before]:
            del table[worker_id]
