"""The SQL repository of workers' heartbeats: the port's ``WorkerRepository``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from durable_sessions.model.records import WorkerRecord
from durable_sessions.store.base import WorkerRepository
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.work import Work


def _worker(row: sa.Row[Any]) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        endpoints=tuple(row.endpoints["names"]),
        started_at=row.started_at,
        seen_at=row.seen_at,
    )


class SqlWorkers(WorkerRepository):
    """Heartbeats in ``ds_workers``; a beat updates the worker's row, or inserts it."""

    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = schema.workers

    async def beat(self, worker: WorkerRecord) -> None:
        t = self._t
        values = {
            "host": worker.host,
            "pid": worker.pid,
            "endpoints": {"names": list(worker.endpoints)},
            "started_at": worker.started_at,
            "seen_at": worker.seen_at,
        }
        result = await self._w.execute(
            sa.update(t).where(t.c.id == worker.id).values(values), write=True
        )
        if result.rowcount != 1:
            await self._w.execute(sa.insert(t).values(id=worker.id, **values), write=True)

    async def seen_since(self, since: datetime) -> list[WorkerRecord]:
        t = self._t
        query = sa.select(t).where(t.c.seen_at >= since).order_by(t.c.id)
        return [_worker(row) for row in await self._w.execute(query)]

    async def forget(self, worker_id: str) -> None:
        t = self._t
        await self._w.execute(sa.delete(t).where(t.c.id == worker_id), write=True)

    async def forget_before(self, before: datetime) -> None:
        t = self._t
        await self._w.execute(sa.delete(t).where(t.c.seen_at < before), write=True)
