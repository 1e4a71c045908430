"""The SQL repository of WS-RM sequences: the port's ``SequenceRepository`` on SQLite and
PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from durable_sessions.errors import ConcurrencyConflict
from durable_sessions.model.records import SequenceRecord, SequenceRole
from durable_sessions.store.base import SequenceRepository, check_limit
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.work import Work

_COLUMNS = tuple(f.name for f in dataclasses.fields(SequenceRecord))
_FIXED = ("identifier", "role", "created_at")
"""Columns an update never changes."""


def _values(sequence: SequenceRecord) -> dict[str, Any]:
    return {name: getattr(sequence, name) for name in _COLUMNS}


def _sequence(row: sa.Row[Any]) -> SequenceRecord:
    m = row._mapping
    return SequenceRecord(**{name: m[name] for name in _COLUMNS})


class SqlSequences(SequenceRepository):
    """Sequences in ``ds_sequences``; the row lock is ``SELECT ... FOR UPDATE``."""

    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = schema.sequences

    async def add(self, sequence: SequenceRecord) -> None:
        await self._w.execute(sa.insert(self._t).values(_values(sequence)), write=True)

    async def get(self, identifier: str, *, lock: bool = False) -> SequenceRecord | None:
        query = sa.select(self._t).where(self._t.c.identifier == identifier)
        if lock:
            query = query.with_for_update()
        row = (await self._w.execute(query)).first()
        return None if row is None else _sequence(row)

    async def update(self, sequence: SequenceRecord) -> SequenceRecord:
        values = _values(sequence)
        for name in _FIXED:
            del values[name]
        values["version"] = sequence.version + 1
        t = self._t
        result = await self._w.execute(
            sa.update(t)
            .where(t.c.identifier == sequence.identifier, t.c.version == sequence.version)
            .values(values),
            write=True,
        )
        if result.rowcount != 1:
            raise self._w.fail(
                ConcurrencyConflict(
                    f"sequence {sequence.identifier!r} changed since it was read "
                    f"(version {sequence.version})"
                )
            )
        stored = await self.get(sequence.identifier)
        assert stored is not None  # the update above just matched it
        return stored

    async def created_by(self, endpoint: str, message_id: str) -> SequenceRecord | None:
        t = self._t
        query = sa.select(t).where(t.c.endpoint == endpoint, t.c.create_message_id == message_id)
        row = (await self._w.execute(query.limit(1))).first()
        return None if row is None else _sequence(row)

    async def of_session(self, session_id: str) -> list[SequenceRecord]:
        t = self._t
        query = (
            sa.select(t)
            .where(t.c.session_id == session_id)
            .order_by(t.c.created_at, t.c.identifier)
        )
        return [_sequence(row) for row in await self._w.execute(query)]

    async def due(
        self,
        role: SequenceRole,
        now: datetime,
        limit: int,
        *,
        endpoints: Collection[str] | None = None,
    ) -> list[SequenceRecord]:
        t = self._t
        query = (
            sa.select(t)
            .where(t.c.role == role, t.c.ended.is_(False), t.c.wake_at <= now)
            .order_by(t.c.wake_at, t.c.identifier)
            .limit(check_limit(limit))
        )
        if endpoints is not None:
            query = query.where(t.c.session_id.is_not(None), t.c.endpoint.in_(list(endpoints)))
        return [_sequence(row) for row in await self._w.execute(query)]
