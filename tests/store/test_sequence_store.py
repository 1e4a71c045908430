"""The sequence repository behaves the same on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from durable_sessions.errors import ConcurrencyConflict, StoreError, UniquenessViolation
from durable_sessions.model.records import SequenceRecord, SequenceRole, new_id
from durable_sessions.store.base import Store
from durable_sessions.wsrm import snapshot
from durable_sessions.wsrm.messages import Payload, RMVersion
from durable_sessions.wsrm.source import ReliableSource
from tests.store.test_store_behaviour import T0, add_session


def make_sequence(**changes: object) -> SequenceRecord:
    base = SequenceRecord(
        identifier=f"urn:uuid:{new_id()}",
        role=SequenceRole.DESTINATION,
        rm_version=RMVersion.WSRM_1_1,
        endpoint="calculator",
        state={"identifier": "x"},
        created_at=T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_sequence_round_trips_every_field_and_engine_state(store: Store) -> None:
    session = await add_session(store)
    source = ReliableSource().open_offered(
        identifier="urn:s", to="urn:to", acks_to="urn:a", now=1.0
    )
    payload = Payload(b'<n xmlns="urn:x">1</n>')
    state = ReliableSource().send(source, action="urn:op", payload=payload, now=2.0)[0]
    sequence = make_sequence(
        role=SequenceRole.SOURCE,
        session_id=session.id,
        rm_version=RMVersion.WSRM_2005_02,
        state=snapshot.dump(state),
        pending=True,
        create_message_id="urn:uuid:create",
        wake_at=T0 + timedelta(seconds=1),
        updated_at=T0,
    )
    async with store.transaction() as uow:
        await uow.sequences.add(sequence)
    async with store.snapshot() as uow:
        stored = await uow.sequences.get(sequence.identifier)
    assert stored == sequence
    assert stored is not None
    restored = snapshot.load_source(stored.state)
    assert restored == state
    assert restored.unacknowledged[0].next_retry_at == 3.0


async def test_of_session_lists_the_sequences_of_one_session(store: Store) -> None:
    session, other = await add_session(store), await add_session(store)
    first = make_sequence(session_id=session.id)
    second = make_sequence(session_id=session.id, created_at=T0 + timedelta(seconds=1))
    async with store.transaction() as uow:
        for sequence in (second, first, make_sequence(session_id=other.id), make_sequence()):
            await uow.sequences.add(sequence)
    async with store.snapshot() as uow:
        found = await uow.sequences.of_session(session.id)
    assert [s.identifier for s in found] == [first.identifier, second.identifier]


async def test_unknown_sequence_is_none(store: Store) -> None:
    async with store.snapshot() as uow:
        assert await uow.sequences.get("urn:nothing") is None


async def test_duplicate_identifier_is_a_uniqueness_violation_and_rolls_back(store: Store) -> None:
    first = make_sequence()
    async with store.transaction() as uow:
        await uow.sequences.add(first)
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.sequences.add(make_sequence(identifier="urn:other"))
            await uow.sequences.add(make_sequence(identifier=first.identifier))
    async with store.snapshot() as uow:
        assert await uow.sequences.get("urn:other") is None


async def test_a_sequence_needs_an_existing_session(store: Store) -> None:
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.sequences.add(make_sequence(session_id=new_id()))


async def test_update_bumps_the_version_and_keeps_identity(store: Store) -> None:
    sequence = make_sequence()
    async with store.transaction() as uow:
        await uow.sequences.add(sequence)
    changed = dataclasses.replace(
        sequence, state={"identifier": "y"}, ended=True, created_at=T0 + timedelta(days=1)
    )
    async with store.transaction() as uow:
        updated = await uow.sequences.update(changed)
    assert updated.version == 2
    assert updated.created_at == T0
    async with store.snapshot() as uow:
        assert await uow.sequences.get(sequence.identifier) == updated
    assert updated.state == {"identifier": "y"}
    assert updated.ended


async def test_stale_or_missing_update_is_a_concurrency_conflict(store: Store) -> None:
    sequence = make_sequence()
    async with store.transaction() as uow:
        await uow.sequences.add(sequence)
        await uow.sequences.update(sequence)
    with pytest.raises(ConcurrencyConflict):
        async with store.transaction() as uow:
            await uow.sequences.update(sequence)
    with pytest.raises(ConcurrencyConflict):
        async with store.transaction() as uow:
            await uow.sequences.update(make_sequence())


async def test_created_by_finds_the_sequence_of_a_create_request(store: Store) -> None:
    sequence = make_sequence(create_message_id="urn:uuid:m1")
    async with store.transaction() as uow:
        await uow.sequences.add(sequence)
        await uow.sequences.add(make_sequence(endpoint="other", create_message_id="urn:uuid:m2"))
    async with store.snapshot() as uow:
        assert await uow.sequences.created_by("calculator", "urn:uuid:m1") == sequence
        assert await uow.sequences.created_by("calculator", "urn:uuid:m2") is None
        assert await uow.sequences.created_by("other", "urn:uuid:m1") is None


async def test_due_lists_live_sequences_of_a_role_by_wake_time(store: Store) -> None:
    late = make_sequence(wake_at=T0 + timedelta(seconds=2))
    early = make_sequence(wake_at=T0 + timedelta(seconds=1))
    async with store.transaction() as uow:
        for sequence in (
            late,
            early,
            make_sequence(wake_at=T0 + timedelta(seconds=9)),
            make_sequence(wake_at=T0, ended=True),
            make_sequence(wake_at=None),
            make_sequence(wake_at=T0, role=SequenceRole.SOURCE),
        ):
            await uow.sequences.add(sequence)
    now = T0 + timedelta(seconds=5)
    async with store.snapshot() as uow:
        due = await uow.sequences.due(SequenceRole.DESTINATION, now, 10)
        assert [s.identifier for s in due] == [early.identifier, late.identifier]
        assert len(await uow.sequences.due(SequenceRole.DESTINATION, now, 1)) == 1
        with pytest.raises(ValueError, match="limit"):
            await uow.sequences.due(SequenceRole.DESTINATION, now, 0)


async def test_due_for_endpoints_lists_only_their_sessions_sequences(store: Store) -> None:
    here, there = await add_session(store), await add_session(store)
    hosted = make_sequence(wake_at=T0, session_id=here.id)
    async with store.transaction() as uow:
        for sequence in (
            hosted,
            make_sequence(wake_at=T0, session_id=there.id, endpoint="other"),
            make_sequence(wake_at=T0),  # a client's reply sequence: no session
        ):
            await uow.sequences.add(sequence)
    async with store.snapshot() as uow:
        role = SequenceRole.DESTINATION
        assert len(await uow.sequences.due(role, T0, 10)) == 3
        found = await uow.sequences.due(role, T0, 10, endpoints=["calculator"])
        assert [s.identifier for s in found] == [hosted.identifier]
        assert await uow.sequences.due(role, T0, 10, endpoints=[]) == []


async def test_snapshot_cannot_write_sequences(store: Store) -> None:
    with pytest.raises(StoreError):
        async with store.snapshot() as uow:
            await uow.sequences.add(make_sequence())
