"""On PostgreSQL, row writes ride along with the next insert: a send is three statements."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from durable_sessions.errors import UniquenessViolation
from durable_sessions.model.records import MessageStatus
from durable_sessions.store.base import SessionLock
from durable_sessions.store.sql.store import SqlStore
from tests.store.test_store_behaviour import add_session, make_entry, make_message

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore.from_url(postgres_url)
    try:
        yield store
    finally:
        await store.close()


def count_statements(store: SqlStore) -> list[str]:
    """The SQL of every statement the store's engine sends from now on."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    return sent


async def test_a_send_locks_reads_and_writes_in_three_statements(store: SqlStore) -> None:
    session = await add_session(store)
    message = make_message(session, 1)
    sent = count_statements(store)
    async with store.transaction() as uow:
        locked = (await uow.sessions.get_many([session.id], lock=SessionLock.SENDS))[session.id]
        await uow.messages.add_many([message])
        await uow.sessions.update_many([dataclasses.replace(locked, last_sent_seq=1)])
        (entry,) = await uow.outbox.add_many([make_entry(1)])
    assert len(sent) == 3, sent
    assert sent[-1].startswith("WITH ")
    async with store.snapshot() as uow:
        assert await uow.messages.get(message.message_id) == message
        assert (await uow.sessions.get_many([session.id]))[session.id].last_sent_seq == 1
    async with store.transaction() as uow:
        claimed = await uow.outbox.claim("me", entry.created_at, entry.created_at, 10)
    assert [e.id for e in claimed] == [entry.id]


async def test_writes_waiting_are_sent_before_a_read_and_at_commit(store: SqlStore) -> None:
    session = await add_session(store)
    first, second = make_message(session, 1), make_message(session, 2)
    async with store.transaction() as uow:
        await uow.messages.add_many([first])
        assert await uow.messages.for_session(session.id) == [first]
        await uow.messages.add_many([second])
        await uow.messages.update_many([dataclasses.replace(second, attempts=3)])
    async with store.snapshot() as uow:
        stored = await uow.messages.for_session(session.id)
    assert stored == [first, dataclasses.replace(second, attempts=3)]
    assert stored[0].status is MessageStatus.PENDING


async def test_a_waiting_write_that_fails_fails_its_transaction(store: SqlStore) -> None:
    session = await add_session(store)
    message = make_message(session, 1)
    async with store.transaction() as uow:
        await uow.messages.add_many([message])
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.messages.add_many([make_message(session, 2)])
            await uow.messages.add_many([dataclasses.replace(message, seq=3)])
    async with store.snapshot() as uow:
        assert await uow.messages.for_session(session.id) == [message]
