"""The SQL repository of API keys: ``ds_api_keys``, a row per key, holding its digest."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from durable_sessions.model.records import KeyRecord
from durable_sessions.store.base import KeyRepository
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.work import Work

_COLUMNS = tuple(f.name for f in dataclasses.fields(KeyRecord))


def _key(row: sa.Row[Any]) -> KeyRecord:
    m = row._mapping
    return KeyRecord(**{name: m[name] for name in _COLUMNS})


class SqlKeys(KeyRepository):
    """Keys in ``ds_api_keys``, looked up by name or by their unique prefix."""

    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = schema.keys

    async def add(self, key: KeyRecord) -> None:
        values = {name: getattr(key, name) for name in _COLUMNS}
        await self._w.execute(sa.insert(self._t).values(values), write=True)

    async def get(self, name: str) -> KeyRecord | None:
        row = (await self._w.execute(sa.select(self._t).where(self._t.c.name == name))).first()
        return None if row is None else _key(row)

    async def by_prefix(self, prefix: str) -> KeyRecord | None:
        query = sa.select(self._t).where(self._t.c.prefix == prefix)
        row = (await self._w.execute(query)).first()
        return None if row is None else _key(row)

    async def all(self) -> list[KeyRecord]:
        result = await self._w.execute(sa.select(self._t).order_by(self._t.c.name))
        return [_key(row) for row in result]

    async def used(self, name: str, at: datetime) -> None:
        statement = sa.update(self._t).where(self._t.c.name == name).values(last_used_at=at)
        await self._w.execute(statement, write=True)

    async def remove(self, name: str) -> bool:
        result = await self._w.execute(sa.delete(self._t).where(self._t.c.name == name), write=True)
        return bool(result.rowcount == 1)
