"""The SQL repository of faulted datagram listeners: ``ds_listener_faults``, a row per endpoint."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from durable_sessions.errors import StoreError
from durable_sessions.model.records import ListenerFault
from durable_sessions.store.base import ListenerFaultRepository
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.work import Work

_COLUMNS = tuple(f.name for f in dataclasses.fields(ListenerFault))


def _fault(row: sa.Row[Any]) -> ListenerFault:
    m = row._mapping
    return ListenerFault(**{name: m[name] for name in _COLUMNS})


class SqlListenerFaults(ListenerFaultRepository):
    """Faults in ``ds_listener_faults``; the row lock is ``SELECT ... FOR UPDATE``."""

    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = schema.listener_faults

    async def add(self, fault: ListenerFault) -> None:
        values = {name: getattr(fault, name) for name in _COLUMNS}
        await self._w.execute(sa.insert(self._t).values(values), write=True)

    async def get(self, endpoint: str, *, lock: bool = False) -> ListenerFault | None:
        query = sa.select(self._t).where(self._t.c.endpoint == endpoint)
        if lock:
            query = query.with_for_update()
        row = (await self._w.execute(query)).first()
        return None if row is None else _fault(row)

    async def remove(self, endpoint: str) -> None:
        result = await self._w.execute(
            sa.delete(self._t).where(self._t.c.endpoint == endpoint), write=True
        )
        if result.rowcount != 1:
            raise self._w.fail(StoreError(f"the listener of {endpoint!r} is not faulted"))

    async def all(self) -> list[ListenerFault]:
        result = await self._w.execute(sa.select(self._t).order_by(self._t.c.endpoint))
        return [_fault(row) for row in result]
