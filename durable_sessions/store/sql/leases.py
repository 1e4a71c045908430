"""The SQL repository of leases: the port's ``LeaseRepository`` on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from durable_sessions.model.records import LeaseRecord
from durable_sessions.store.base import LeaseRepository
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.work import Work


class SqlLeases(LeaseRepository):
    """Leases in ``ds_leases``; taking one updates (so locks) its row, or inserts it.

    Two processes inserting the same new lease at once: one gets
    :class:`~durable_sessions.errors.UniquenessViolation` and tries again in a new transaction.
    """

    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = schema.leases

    async def take(self, name: str, holder: str, now: datetime, until: datetime) -> LeaseRecord:
        t = self._t
        result = await self._w.execute(
            sa.update(t)
            .where(t.c.name == name, sa.or_(t.c.holder == holder, t.c.expires_at <= now))
            .values(holder=holder, expires_at=until),
            write=True,
        )
        if result.rowcount == 1:
            return LeaseRecord(name, holder, until)
        row = (await self._w.execute(sa.select(t).where(t.c.name == name))).first()
        if row is not None:
            return LeaseRecord(row.name, row.holder, row.expires_at)
        await self._w.execute(
            sa.insert(t).values(name=name, holder=holder, expires_at=until), write=True
        )
        return LeaseRecord(name, holder, until)

    async def release(self, name: str, holder: str) -> None:
        t = self._t
        await self._w.execute(
            sa.delete(t).where(t.c.name == name, t.c.holder == holder), write=True
        )
