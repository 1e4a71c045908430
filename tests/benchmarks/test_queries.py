"""The benchmark's own queries, against the schema the migrations make."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from benchmarks.recovery import advanced, in_flight
from durable_sessions.model.records import SessionRecord, new_id
from durable_sessions.store.base import Store
from durable_sessions.store.sql.store import SqlStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_in_flight_and_advanced_read_both_sides_of_a_session(store: Store) -> None:
    assert isinstance(store, SqlStore)
    caught_up, behind = new_id(), new_id()

    def session(session_id: str, sent: int, applied: int) -> SessionRecord:
        return SessionRecord(
            id=session_id,
            contract="Calculator",
            endpoint="calculator",
            created_at=T0,
            last_sent_seq=sent,
            last_applied_seq=applied,
        )

    async with store.transaction() as uow:
        await uow.sessions.add_many([session(caught_up, 3, 3), session(behind, 5, 2)])

    held = await in_flight(store)
    assert held == {behind: 2}
    assert await advanced(store, held) == set()
    assert await advanced(store, {behind: 1, caught_up: 3}) == {behind}
