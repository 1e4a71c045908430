"""The SQL store: the repositories of :mod:`durable_sessions.store.base` on SQLite and PostgreSQL.

Statements are SQLAlchemy Core over the tables of :mod:`durable_sessions.store.sql.schema`;
rows are turned into the frozen records of :mod:`durable_sessions.model.records` and back. Locks
are row locks (``SELECT ... FOR NO KEY UPDATE``, taken in id order) on PostgreSQL and the
database write lock on SQLite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from durable_sessions.errors import StoreError
from durable_sessions.model.records import (
    DeadLetterRecord,
    MessageRecord,
    MessageStatus,
    OutboxRecord,
)
from durable_sessions.store.base import (
    DeadLetterQuery,
    DeadLetterRepository,
    MessageRepository,
    OutboxRepository,
    OutboxStats,
    Store,
    UnitOfWork,
    check_limit,
)
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.engine import WRITE_OPTION, create_engine, translated_errors
from durable_sessions.store.sql.keys import SqlKeys
from durable_sessions.store.sql.leases import SqlLeases
from durable_sessions.store.sql.listeners import SqlListenerFaults
from durable_sessions.store.sql.nonces import SqlNonces
from durable_sessions.store.sql.sequences import SqlSequences
from durable_sessions.store.sql.sessions import SqlSessions
from durable_sessions.store.sql.work import IDS, Work, one_of
from durable_sessions.store.sql.workers import SqlWorkers

R = TypeVar("R")


def _fields(record_type: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(record_type))


_MESSAGE_COLUMNS = _fields(MessageRecord)
_OUTBOX_COLUMNS = _fields(OutboxRecord)
_DEAD_LETTER_COLUMNS = _fields(DeadLetterRecord)


_MESSAGE_UPDATABLE = tuple(
    c for c in _MESSAGE_COLUMNS if c not in ("message_id", "session_id", "seq")
)
_MESSAGES = schema.messages
_OUTBOX = schema.outbox


@functools.cache
def _messages_by_id(dialect: str, *, lock: bool) -> sa.Select[Any]:
    """The messages whose ids are in parameter ``IDS`` (locked, in id order)."""
    query = sa.select(_MESSAGES).where(one_of(_MESSAGES.c.message_id, dialect))
    if lock:
        query = query.order_by(_MESSAGES.c.message_id).with_for_update()
    return query


@functools.cache
def _remove_outbox(dialect: str) -> sa.Delete:
    """Delete the outbox entries whose ids are in parameter ``IDS``."""
    return sa.delete(_OUTBOX).where(one_of(_OUTBOX.c.id, dialect))


def _changed(columns: Sequence[str], pairs: Sequence[tuple[object, object]]) -> list[str]:
    """The columns in which any (before, after) pair of records differs."""
    return [c for c in columns if any(getattr(a, c) != getattr(b, c) for a, b in pairs)]


def _values(record: object, columns: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(record, name) for name in columns}


def _record(record_type: type[R], columns: Sequence[str], row: sa.Row[Any]) -> R:
    m = row._mapping
    return record_type(**{name: m[name] for name in columns})


class _Messages(MessageRepository):
    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = _MESSAGES

    async def add(self, message: MessageRecord) -> None:
        await self._w.execute(
            sa.insert(self._t).values(_values(message, _MESSAGE_COLUMNS)), write=True
        )
        self._w.known_messages[message.message_id] = message

    async def add_many(self, messages: Sequence[MessageRecord]) -> None:
        if messages:
            await self._w.insert_rows(_MESSAGES, [_values(m, _MESSAGE_COLUMNS) for m in messages])
            self._w.known_messages.update((m.message_id, m) for m in messages)
        else:
            self._w.check(write=True)

    async def get(self, message_id: str) -> MessageRecord | None:
        return (await self.get_many([message_id])).get(message_id)

    async def get_many(
        self, message_ids: Collection[str], *, lock: bool = False
    ) -> dict[str, MessageRecord]:
        if not message_ids:
            self._w.check()
            return {}
        result = await self._w.execute(
            _messages_by_id(self._w.dialect, lock=lock), {IDS: sorted(set(message_ids))}
        )
        found = {row.message_id: self._message(row) for row in result}
        self._w.known_messages.update(found)
        return found

    async def by_seq(self, session_id: str, seq: int) -> MessageRecord | None:
        t = self._t
        result = await self._w.execute(
            sa.select(t).where(t.c.session_id == session_id, t.c.seq == seq)
        )
        row = result.first()
        return None if row is None else self._message(row)

    async def update(self, message: MessageRecord) -> None:
        t = self._t
        values = _values(message, _MESSAGE_COLUMNS)
        for key in ("message_id", "session_id", "seq"):
            del values[key]
        result = await self._w.execute(
            sa.update(t)
            .where(
                t.c.message_id == message.message_id,
                t.c.session_id.is_not_distinct_from(message.session_id),
                t.c.seq.is_not_distinct_from(message.seq),
            )
            .values(values),
            write=True,
        )
        if result.rowcount != 1:
            raise self._w.fail(
                StoreError(f"no message {message.message_id!r} to update with that session and seq")
            )

    async def update_many(self, messages: Sequence[MessageRecord]) -> None:
        if not messages:
            self._w.check(write=True)
            return
        if len({m.message_id for m in messages}) != len(messages):
            raise self._w.fail(StoreError("a message appears twice in one batch update"))
        known = self._w.known_messages
        unknown = [m.message_id for m in messages if m.message_id not in known]
        if unknown:
            result = await self._w.execute(
                _messages_by_id(self._w.dialect, lock=False), {IDS: unknown}
            )
            known.update((row.message_id, self._message(row)) for row in result)
        if any(
            m.message_id not in known
            or (known[m.message_id].session_id, known[m.message_id].seq) != (m.session_id, m.seq)
            for m in messages
        ):
            raise self._w.fail(
                StoreError("a message to update is missing or would change its session or seq")
            )
        # Messages are as last read or written here: write what changed only.
        changed = _changed(_MESSAGE_UPDATABLE, [(known[m.message_id], m) for m in messages])
        if changed:
            rows = [
                {"message_id": m.message_id, **{c: getattr(m, c) for c in changed}}
                for m in messages
            ]
            await self._w.update_rows(_MESSAGES, "message_id", rows)
        known.update((m.message_id, m) for m in messages)

    async def for_session(
        self,
        session_id: str,
        *,
        statuses: Collection[MessageStatus] | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[MessageRecord]:
        t = self._t
        stmt = (
            sa.select(t)
            .where(t.c.session_id == session_id, t.c.seq > after_seq)
            .order_by(t.c.seq)
            .limit(check_limit(limit))
        )
        if statuses is not None:
            stmt = stmt.where(t.c.status.in_(list(statuses)))
        result = await self._w.execute(stmt)
        return [self._message(row) for row in result]

    async def retries_due(self, now: datetime, limit: int) -> list[MessageRecord]:
        t = self._t
        result = await self._w.execute(
            sa.select(t)
            .where(t.c.status == MessageStatus.PENDING, t.c.next_attempt_at <= now)
            .order_by(t.c.next_attempt_at, t.c.message_id)
            .limit(check_limit(limit))
        )
        return [self._message(row) for row in result]

    @staticmethod
    def _message(row: sa.Row[Any]) -> MessageRecord:
        return _record(MessageRecord, _MESSAGE_COLUMNS, row)


class _Outbox(OutboxRepository):
    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = _OUTBOX

    async def add(self, entry: OutboxRecord) -> OutboxRecord:
        values = _values(entry, _OUTBOX_COLUMNS)
        del values["id"]
        result = await self._w.execute(
            sa.insert(self._t).values(values).returning(self._t.c.id), write=True
        )
        return dataclasses.replace(entry, id=result.scalar_one())

    async def add_many(self, entries: Sequence[OutboxRecord]) -> list[OutboxRecord]:
        if not entries:
            self._w.check(write=True)
            return []
        rows = []
        for entry in entries:
            values = _values(entry, _OUTBOX_COLUMNS)
            del values["id"]
            rows.append(values)
        ids = await self._w.insert_numbered_rows(self._t, "id", rows)
        return [dataclasses.replace(e, id=i) for e, i in zip(entries, ids, strict=True)]

    async def claim(
        self, owner: str, now: datetime, until: datetime, limit: int
    ) -> list[OutboxRecord]:
        t = self._t
        free = (
            sa.select(t.c.id)
            .where(sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until <= now))
            .order_by(t.c.id)
            .limit(check_limit(limit))
            .with_for_update(skip_locked=True)
        )
        result = await self._w.execute(
            sa.update(t)
            .where(t.c.id.in_(free))
            .values(claimed_by=owner, claimed_until=until)
            .returning(t),
            write=True,
        )
        claimed = [_record(OutboxRecord, _OUTBOX_COLUMNS, row) for row in result]
        return sorted(claimed, key=lambda e: e.id or 0)

    async def remove(self, ids: Collection[int]) -> None:
        if ids:
            await self._w.execute(_remove_outbox(self._w.dialect), {IDS: list(ids)}, write=True)
        else:
            self._w.check(write=True)

    async def stats(self) -> OutboxStats:
        t = self._t
        result = await self._w.execute(sa.select(sa.func.count(), sa.func.min(t.c.created_at)))
        count, oldest = result.one()
        return OutboxStats(int(count), oldest)


class _DeadLetters(DeadLetterRepository):
    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = schema.dead_letters

    async def add(self, dead_letter: DeadLetterRecord) -> None:
        await self._w.execute(
            sa.insert(self._t).values(_values(dead_letter, _DEAD_LETTER_COLUMNS)), write=True
        )

    async def add_many(self, dead_letters: Sequence[DeadLetterRecord]) -> None:
        if dead_letters:
            await self._w.execute_many(
                sa.insert(self._t), [_values(d, _DEAD_LETTER_COLUMNS) for d in dead_letters]
            )
        else:
            self._w.check(write=True)

    async def get(self, dead_letter_id: str) -> DeadLetterRecord | None:
        result = await self._w.execute(sa.select(self._t).where(self._t.c.id == dead_letter_id))
        row = result.first()
        return None if row is None else _record(DeadLetterRecord, _DEAD_LETTER_COLUMNS, row)

    async def update(self, dead_letter: DeadLetterRecord) -> None:
        values = _values(dead_letter, _DEAD_LETTER_COLUMNS)
        del values["id"]
        result = await self._w.execute(
            sa.update(self._t).where(self._t.c.id == dead_letter.id).values(values), write=True
        )
        if result.rowcount != 1:
            raise self._w.fail(StoreError(f"no dead letter {dead_letter.id!r} to update"))

    async def find(self, query: DeadLetterQuery) -> list[DeadLetterRecord]:
        t = self._t
        stmt = sa.select(t).order_by(t.c.id).limit(check_limit(query.limit))
        if query.session_id is not None:
            stmt = stmt.where(t.c.session_id == query.session_id)
        if query.reason is not None:
            stmt = stmt.where(t.c.reason == query.reason)
        if query.after_id is not None:
            stmt = stmt.where(t.c.id > query.after_id)
        result = await self._w.execute(stmt)
        return [_record(DeadLetterRecord, _DEAD_LETTER_COLUMNS, row) for row in result]

    async def count_waiting(self) -> int:
        t = self._t
        query = sa.select(sa.func.count()).select_from(t).where(t.c.replayed_at.is_(None))
        return int((await self._w.execute(query)).scalar_one())


class _SqlUnitOfWork(UnitOfWork):
    def __init__(self, work: Work) -> None:
        self.work = work
        self.sessions = SqlSessions(work)
        self.messages = _Messages(work)
        self.outbox = _Outbox(work)
        self.dead_letters = _DeadLetters(work)
        self.listener_faults = SqlListenerFaults(work)
        self.sequences = SqlSequences(work)
        self.leases = SqlLeases(work)
        self.workers = SqlWorkers(work)
        self.keys = SqlKeys(work)
        self.nonces = SqlNonces(work)


class SqlStore(Store):
    """The store on a SQL database (SQLite or PostgreSQL) through an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        """A store on the database at ``url``; its schema must be migrated already."""
        return cls(create_engine(url))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        async with self._begin(write=True) as uow:
            yield uow

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[UnitOfWork]:
        async with self._begin(write=False) as uow:
            yield uow

    @asynccontextmanager
    async def _begin(self, *, write: bool) -> AsyncIterator[UnitOfWork]:
        options: Mapping[str, Any] = {WRITE_OPTION: write}
        if not write and self.engine.dialect.name == "postgresql":
            options = {**options, "postgresql_readonly": True}
        with translated_errors():
            conn = await self.engine.connect()
        try:
            with translated_errors():
                await conn.execution_options(**options)
                transaction = await conn.begin()
            uow = _SqlUnitOfWork(Work(conn, writable=write))
            try:
                yield uow
                uow.work.check()
                await uow.work.flush()
                with translated_errors():
                    await transaction.commit()
            except Exception:
                # The original error matters; a rollback on a dead connection adds nothing.
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            except BaseException:
                # Cancelled mid-statement: the connection's state is unknown and it may hold
                # row locks, so it must never go back to the pool. Closing it ends its
                # transaction on the server.
                with contextlib.suppress(BaseException):
                    await conn.invalidate()
                raise
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def ping(self) -> None:
        with translated_errors():
            async with self.engine.connect() as conn:
                await conn.execute(sa.select(sa.literal(1)))

    async def close(self) -> None:
        await self.engine.dispose()
