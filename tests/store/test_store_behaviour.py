"""One behaviour suite for every store: memory, SQLite and PostgreSQL enforce the same rules."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from durable_sessions.errors import ConcurrencyConflict, StoreError, UniquenessViolation
from durable_sessions.model.access import Role
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    DeadLetterReason,
    DeadLetterRecord,
    KeyRecord,
    LeaseRecord,
    ListenerFault,
    MessageRecord,
    MessageStatus,
    OutboxRecord,
    SessionRecord,
    new_id,
)
from durable_sessions.store.base import (
    DeadLetterQuery,
    SessionLock,
    SessionOrder,
    SessionQuery,
    Store,
)
from durable_sessions.store.sql.store import SqlStore

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_session(**changes: object) -> SessionRecord:
    base = SessionRecord(id=new_id(), contract="Calculator", endpoint="calculator", created_at=T0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def make_message(
    session: SessionRecord | None, seq: int | None, **changes: object
) -> MessageRecord:
    base = MessageRecord(
        message_id=new_id(),
        endpoint="calculator",
        contract="Calculator",
        operation="add_to",
        args={"n": seq or 0},
        created_at=T0,
        session_id=None if session is None else session.id,
        seq=seq,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def make_dead_letter(**changes: object) -> DeadLetterRecord:
    base = DeadLetterRecord(
        id=new_id(),
        message_id=new_id(),
        endpoint="calculator",
        contract="Calculator",
        operation="divide_by",
        args={"n": 0},
        reason=DeadLetterReason.POISON,
        created_at=T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def add_session(store: Store, **changes: object) -> SessionRecord:
    session = make_session(**changes)
    async with store.transaction() as uow:
        await uow.sessions.add(session)
    return session


# --- sessions -----------------------------------------------------------------------------


async def test_session_round_trips_every_field(store: Store) -> None:
    session = make_session(
        labels={"tenant": "acme", "region": "eu"},
        instance_state={"result": 1.5, "history": [1, "two", None, {"x": True}]},
        last_sent_seq=7,
        last_applied_seq=3,
        applied_count=3,
        parked_count=2,
        duplicate_count=4,
        dead_count=1,
        ttl_s=3600.0,
        last_activity_at=T0 + timedelta(seconds=5),
        updated_at=T0 + timedelta(seconds=6),
        last_sent_at=T0 + timedelta(seconds=4),
        stall_check_at=T0 + timedelta(seconds=64),
        close_requested=True,
        fault_seq=4,
        fault_reason="ZeroDivisionError: float division by zero",
    )
    async with store.transaction() as uow:
        await uow.sessions.add(session)
    async with store.snapshot() as uow:
        loaded = await uow.sessions.get(session.id)
    assert loaded == session
    assert loaded is not None
    assert loaded.created_at.tzinfo is not None
    assert loaded.expires_at == T0 + timedelta(seconds=3600), "4 wait: the time to live holds"


async def test_unknown_session_is_none(store: Store) -> None:
    async with store.snapshot() as uow:
        assert await uow.sessions.get("no-such-session") is None
        assert await uow.sessions.get_many(["a", "b"]) == {}


async def test_duplicate_session_id_is_a_uniqueness_violation_and_rolls_back(store: Store) -> None:
    existing = await add_session(store)
    newcomer = make_session()
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.sessions.add(newcomer)
            await uow.sessions.add(dataclasses.replace(newcomer, id=existing.id))
    async with store.snapshot() as uow:
        assert await uow.sessions.get(newcomer.id) is None


async def test_a_failed_unit_of_work_refuses_further_work(store: Store) -> None:
    existing = await add_session(store)
    with pytest.raises(StoreError, match="failed earlier"):
        async with store.transaction() as uow:
            with pytest.raises(UniquenessViolation):
                await uow.sessions.add(existing)
            await uow.sessions.get(existing.id)


async def test_swallowing_a_store_error_still_fails_the_commit(store: Store) -> None:
    existing = await add_session(store)
    fresh = make_session()
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.sessions.add(fresh)
            with pytest.raises(UniquenessViolation):
                await uow.sessions.add(existing)
    async with store.snapshot() as uow:
        assert await uow.sessions.get(fresh.id) is None


async def test_an_exception_rolls_everything_back(store: Store) -> None:
    session = make_session()
    with pytest.raises(RuntimeError):
        async with store.transaction() as uow:
            await uow.sessions.add(session)
            await uow.messages.add(make_message(session, 1))
            raise RuntimeError("boom")
    async with store.snapshot() as uow:
        assert await uow.sessions.get(session.id) is None


async def test_update_bumps_the_version(store: Store) -> None:
    session = await add_session(store)
    async with store.transaction() as uow:
        current = await uow.sessions.get(session.id, lock=SessionLock.BOTH)
        assert current is not None
        updated = await uow.sessions.update(
            dataclasses.replace(current, state=SessionState.CLOSING, last_sent_seq=1)
        )
    assert updated.version == session.version + 1
    async with store.snapshot() as uow:
        assert await uow.sessions.get(session.id) == updated


async def test_a_send_side_change_keeps_the_version(store: Store) -> None:
    session = await add_session(store)
    async with store.transaction() as uow:
        current = await uow.sessions.get(session.id, lock=SessionLock.SENDS)
        assert current is not None
        sent = dataclasses.replace(current, last_sent_seq=1, last_sent_at=T0, stall_check_at=T0)
        updated = await uow.sessions.update(sent)
    assert updated == sent
    async with store.snapshot() as uow:
        assert await uow.sessions.get(session.id) == sent


@pytest.mark.parametrize("lock", [None, SessionLock.STATE])
async def test_a_send_side_change_needs_the_send_lock(
    store: Store, lock: SessionLock | None
) -> None:
    session = await add_session(store)
    with pytest.raises(StoreError, match="send lock"):
        async with store.transaction() as uow:
            current = await uow.sessions.get(session.id, lock=lock)
            assert current is not None
            await uow.sessions.update(dataclasses.replace(current, last_sent_seq=1))
    async with store.snapshot() as uow:
        assert await uow.sessions.get(session.id) == session


async def test_stale_update_is_a_concurrency_conflict(store: Store) -> None:
    session = await add_session(store)
    async with store.transaction() as uow:
        await uow.sessions.update(dataclasses.replace(session, last_applied_seq=1))
    with pytest.raises(ConcurrencyConflict):
        async with store.transaction() as uow:
            await uow.sessions.update(dataclasses.replace(session, last_applied_seq=2))
    async with store.snapshot() as uow:
        stored = await uow.sessions.get(session.id)
    assert stored is not None
    assert (stored.last_applied_seq, stored.version) == (1, session.version + 1)


async def test_update_of_a_missing_session_is_a_conflict(store: Store) -> None:
    with pytest.raises(ConcurrencyConflict):
        async with store.transaction() as uow:
            await uow.sessions.update(make_session())


async def test_locked_read_modify_write_serialises_concurrent_writers(store: Store) -> None:
    session = await add_session(store)

    async def bump(lock: SessionLock, *names: str) -> None:
        async with store.transaction() as uow:
            current = await uow.sessions.get(session.id, lock=lock)
            assert current is not None
            await asyncio.sleep(0.02)
            changes = {name: (getattr(current, name) or 0) + 1 for name in names}
            await uow.sessions.update(dataclasses.replace(current, **changes))

    jobs = [
        (SessionLock.STATE, ("last_applied_seq",)),
        (SessionLock.SENDS, ("last_sent_seq",)),
        (SessionLock.BOTH, ("parked_count", "terminating_seq")),
    ]
    await asyncio.gather(*(bump(lock, *names) for _ in range(4) for lock, names in jobs))
    async with store.snapshot() as uow:
        stored = await uow.sessions.get(session.id)
    assert stored is not None
    assert (stored.last_applied_seq, stored.last_sent_seq) == (4, 4)
    assert (stored.parked_count, stored.terminating_seq) == (4, 4)
    assert stored.version == session.version + 8


@pytest.mark.postgres
async def test_senders_and_appliers_of_a_session_do_not_wait_for_each_other(
    postgres_url: str,
) -> None:
    """Row locks on PostgreSQL: the state and the send side are locked apart, and a message
    inserted for the session does not wait for either (its foreign-key check shares them)."""
    store = SqlStore.from_url(postgres_url)
    try:
        session = await add_session(store)
        applier_holds, sender_done = asyncio.Event(), asyncio.Event()

        async def apply() -> None:
            async with store.transaction() as uow:
                current = await uow.sessions.get(session.id, lock=SessionLock.STATE)
                assert current is not None
                applier_holds.set()
                await asyncio.wait_for(sender_done.wait(), 5)
                await uow.sessions.update(dataclasses.replace(current, last_applied_seq=1))

        async def send() -> None:
            await applier_holds.wait()
            async with store.transaction() as uow:
                current = await uow.sessions.get(session.id, lock=SessionLock.SENDS)
                assert current is not None
                await uow.messages.add(make_message(session, 1))
                await uow.sessions.update(dataclasses.replace(current, last_sent_seq=1))
            sender_done.set()

        await asyncio.gather(apply(), send())
        async with store.snapshot() as uow:
            stored = await uow.sessions.get(session.id)
        assert stored is not None
        assert (stored.last_applied_seq, stored.last_sent_seq) == (1, 1)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_change_of_both_parts_waits_for_a_sender_and_reads_what_it_sent(
    postgres_url: str,
) -> None:
    store = SqlStore.from_url(postgres_url)
    try:
        session = await add_session(store)
        sender_holds, release = asyncio.Event(), asyncio.Event()

        async def send() -> None:
            async with store.transaction() as uow:
                current = await uow.sessions.get(session.id, lock=SessionLock.SENDS)
                assert current is not None
                sender_holds.set()
                await release.wait()
                await uow.sessions.update(dataclasses.replace(current, last_sent_seq=1))

        async def close() -> int:
            await sender_holds.wait()
            async with store.transaction() as uow:
                locking = asyncio.ensure_future(uow.sessions.get(session.id, lock=SessionLock.BOTH))
                await asyncio.sleep(0.2)
                assert not locking.done()
                release.set()
                current = await locking
                assert current is not None
                await uow.sessions.update(dataclasses.replace(current, state=SessionState.CLOSING))
                return current.last_sent_seq

        _, seen = await asyncio.gather(send(), close())
        assert seen == 1
    finally:
        await store.close()


async def test_snapshot_is_read_only_and_sees_only_committed_work(store: Store) -> None:
    session = make_session()
    with pytest.raises(StoreError, match="read-only"):
        async with store.snapshot() as uow:
            await uow.sessions.add(session)
    async with store.transaction() as writer:
        await writer.sessions.add(session)
        async with store.snapshot() as reader:
            assert await reader.sessions.get(session.id) is None
    async with store.snapshot() as reader:
        assert await reader.sessions.get(session.id) == session


async def test_get_many_returns_only_existing_sessions(store: Store) -> None:
    a, b = await add_session(store), await add_session(store)
    async with store.transaction() as uow:
        found = await uow.sessions.get_many([b.id, "missing", a.id], lock=SessionLock.STATE)
    assert found == {a.id: a, b.id: b}


async def test_find_filters_by_state_contract_and_labels_with_keyset_pages(store: Store) -> None:
    made = [
        await add_session(store, labels={"tenant": "acme", "tier": "gold"}),
        await add_session(store, labels={"tenant": "acme"}),
        await add_session(store, contract="Orders", labels={"tenant": "acme", "tier": "gold"}),
        await add_session(store, state=SessionState.CLOSED, labels={"tenant": "other"}),
        await add_session(store, labels={"tenant": "acme", "tier": "gold"}),
    ]
    ids = sorted(s.id for s in made)
    async with store.snapshot() as uow:
        all_ids = [s.id for s in await uow.sessions.find(SessionQuery(limit=10))]
        first = await uow.sessions.find(SessionQuery(limit=2))
        second = await uow.sessions.find(SessionQuery(limit=2, after_id=first[-1].id))
        gold = await uow.sessions.find(SessionQuery(labels={"tenant": "acme", "tier": "gold"}))
        gold_calc = await uow.sessions.find(
            SessionQuery(contract="Calculator", labels={"tier": "gold"})
        )
        closed = await uow.sessions.find(SessionQuery(state=SessionState.CLOSED))
        nothing = await uow.sessions.find(SessionQuery(labels={"tenant": "nobody"}))
    assert all_ids == ids
    assert [s.id for s in first + second] == ids[:4]
    assert {s.id for s in gold} == {made[0].id, made[2].id, made[4].id}
    assert {s.id for s in gold_calc} == {made[0].id, made[4].id}
    assert [s.id for s in closed] == [made[3].id]
    assert nothing == []


async def test_find_filters_by_endpoint_and_creation_time(store: Store) -> None:
    early = await add_session(store, created_at=T0)
    later = await add_session(store, created_at=T0 + timedelta(minutes=5))
    elsewhere = await add_session(
        store, endpoint="calculator-2", created_at=T0 + timedelta(minutes=10)
    )
    async with store.snapshot() as uow:
        on_calculator = await uow.sessions.find(SessionQuery(endpoint="calculator"))
        since = await uow.sessions.find(SessionQuery(created_after=T0 + timedelta(minutes=5)))
        before = await uow.sessions.find(
            SessionQuery(created_before=T0 + timedelta(minutes=5), endpoint="calculator")
        )
    assert [s.id for s in on_calculator] == [early.id, later.id]
    assert [s.id for s in since] == [later.id, elsewhere.id]
    assert [s.id for s in before] == [early.id]


async def test_find_lists_the_newest_first_with_keyset_pages(store: Store) -> None:
    made = sorted([(await add_session(store)).id for _ in range(5)], reverse=True)
    newest = SessionQuery(order=SessionOrder.NEWEST_FIRST, limit=2)
    async with store.snapshot() as uow:
        first = await uow.sessions.find(newest)
        second = await uow.sessions.find(dataclasses.replace(newest, after_id=first[-1].id))
        last = await uow.sessions.find(dataclasses.replace(newest, after_id=made[-2]))
    assert [s.id for s in first + second] == made[:4]
    assert [s.id for s in last] == made[-1:]


async def test_find_rejects_silly_page_sizes(store: Store) -> None:
    async with store.snapshot() as uow:
        for limit in (0, -1, 1001):
            with pytest.raises(ValueError, match="limit"):
                await uow.sessions.find(SessionQuery(limit=limit))


async def test_expiring_lists_live_sessions_past_their_deadline(store: Store) -> None:
    idle = await add_session(store, inactivity_timeout_s=10.0)
    active = await add_session(store, last_activity_at=T0 + timedelta(seconds=100))
    old = await add_session(store, ttl_s=5.0)
    await add_session(store, state=SessionState.CLOSED, inactivity_timeout_s=1.0)
    faulted = await add_session(store, state=SessionState.FAULTED, ttl_s=20.0)
    await add_session(store, state=SessionState.FAULTED, inactivity_timeout_s=1.0)
    async with store.snapshot() as uow:
        due = await uow.sessions.expiring(T0 + timedelta(seconds=30), limit=10)
        later = await uow.sessions.expiring(T0 + timedelta(seconds=3600), limit=10)
    assert [s.id for s in due] == [old.id, idle.id, faulted.id]
    assert active.id in {s.id for s in later}
    assert SessionState.CLOSED not in {s.state for s in later}


async def test_a_recent_send_keeps_a_session_from_expiring(store: Store) -> None:
    sent_to = await add_session(
        store, inactivity_timeout_s=10.0, last_sent_at=T0 + timedelta(seconds=25)
    )
    capped = await add_session(
        store, inactivity_timeout_s=10.0, ttl_s=30.0, last_sent_at=T0 + timedelta(seconds=25)
    )
    await add_session(store, state=SessionState.CLOSED, last_sent_at=T0 + timedelta(seconds=1))
    assert sent_to.expires_at == T0 + timedelta(seconds=35)
    assert capped.expires_at == T0 + timedelta(seconds=30)
    async with store.snapshot() as uow:
        at_20 = await uow.sessions.expiring(T0 + timedelta(seconds=20), limit=10)
        at_32 = await uow.sessions.expiring(T0 + timedelta(seconds=32), limit=10)
        at_40 = await uow.sessions.expiring(T0 + timedelta(seconds=40), limit=10)
    assert at_20 == []
    assert [s.id for s in at_32] == [capped.id]
    assert {s.id for s in at_40} == {capped.id, sent_to.id}


async def test_pending_messages_keep_a_session_until_its_time_to_live_ends(store: Store) -> None:
    pending = {"last_sent_seq": 2, "last_applied_seq": 1, "last_sent_at": T0}
    waiting = await add_session(store, inactivity_timeout_s=10.0, ttl_s=100.0, **pending)
    forever = await add_session(store, inactivity_timeout_s=10.0, **pending)
    caught_up = await add_session(
        store,
        inactivity_timeout_s=10.0,
        ttl_s=100.0,
        last_sent_seq=2,
        last_applied_seq=2,
        last_activity_at=T0 + timedelta(seconds=5),
    )
    assert (waiting.expires_at, forever.expires_at) == (T0 + timedelta(seconds=100), None)
    async with store.snapshot() as uow:
        at_50 = await uow.sessions.expiring(T0 + timedelta(seconds=50), limit=10)
        at_100 = await uow.sessions.expiring(T0 + timedelta(seconds=100), limit=10)
        much_later = await uow.sessions.expiring(T0 + timedelta(days=400), limit=10)
    assert [s.id for s in at_50] == [caught_up.id]
    assert [s.id for s in at_100] == [caught_up.id, waiting.id]
    assert forever.id not in {s.id for s in much_later}


async def test_a_send_after_the_state_was_written_keeps_the_session(store: Store) -> None:
    """A send writes the send side only: the state's deadline, written when nothing was
    pending, no longer holds, and the time to live does until the message is applied."""
    session = await add_session(store, inactivity_timeout_s=10.0, ttl_s=100.0)
    async with store.transaction() as uow:
        current = await uow.sessions.get(session.id, lock=SessionLock.SENDS)
        assert current is not None
        sent_at = T0 + timedelta(seconds=1)
        await uow.sessions.update(
            dataclasses.replace(current, last_sent_seq=1, last_sent_at=sent_at)
        )

    async def due(seconds: float) -> list[str]:
        async with store.snapshot() as uow:
            found = await uow.sessions.expiring(T0 + timedelta(seconds=seconds), limit=10)
        return [s.id for s in found]

    assert (await due(50), await due(100)) == ([], [session.id])
    async with store.transaction() as uow:
        current = await uow.sessions.get(session.id, lock=SessionLock.STATE)
        assert current is not None
        applied_at = T0 + timedelta(seconds=20)
        await uow.sessions.update(
            dataclasses.replace(current, last_applied_seq=1, last_activity_at=applied_at)
        )
    assert (await due(29), await due(30)) == ([], [session.id])


async def test_stall_checks_due_lists_the_most_overdue_first(store: Store) -> None:
    later = await add_session(store, stall_check_at=T0 + timedelta(seconds=100))
    first = await add_session(store, stall_check_at=T0 + timedelta(seconds=60))
    await add_session(store, stall_check_at=None, last_sent_seq=3)
    async with store.snapshot() as uow:
        due = await uow.sessions.stall_checks_due(T0 + timedelta(seconds=90), limit=10)
        all_due = await uow.sessions.stall_checks_due(T0 + timedelta(seconds=600), limit=10)
    assert [s.id for s in due] == [first.id]
    assert [s.id for s in all_due] == [first.id, later.id]


async def test_count_by_state(store: Store) -> None:
    await add_session(store)
    await add_session(store)
    await add_session(store, state=SessionState.FAULTED)
    async with store.snapshot() as uow:
        counts = await uow.sessions.count_by_state()
    assert counts[SessionState.OPEN] == 2
    assert counts[SessionState.FAULTED] == 1
    assert counts[SessionState.EXPIRED] == 0


# --- messages -----------------------------------------------------------------------------


async def test_message_round_trip_and_lookups(store: Store) -> None:
    session = await add_session(store)
    message = make_message(
        session,
        1,
        args={"n": 2.5, "nested": {"list": [1, 2]}},
        status=MessageStatus.APPLIED,
        attempts=2,
        result={"value": 3.5},
        error="first try failed",
        applied_at=T0 + timedelta(seconds=1),
    )
    async with store.transaction() as uow:
        await uow.messages.add(message)
    async with store.snapshot() as uow:
        assert await uow.messages.get(message.message_id) == message
        assert await uow.messages.by_seq(session.id, 1) == message
        assert await uow.messages.by_seq(session.id, 2) is None
        assert await uow.messages.get_many([message.message_id, "x"]) == {
            message.message_id: message
        }


async def test_message_id_is_unique(store: Store) -> None:
    session = await add_session(store)
    first = make_message(session, 1)
    async with store.transaction() as uow:
        await uow.messages.add(first)
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.messages.add(make_message(session, 2, message_id=first.message_id))


async def test_session_and_seq_are_unique(store: Store) -> None:
    session = await add_session(store)
    async with store.transaction() as uow:
        await uow.messages.add(make_message(session, 1))
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.messages.add(make_message(session, 1))


async def test_datagrams_have_no_session_and_no_seq(store: Store) -> None:
    a, b = make_message(None, None), make_message(None, None)
    async with store.transaction() as uow:
        await uow.messages.add(a)
        await uow.messages.add(b)
    async with store.snapshot() as uow:
        assert await uow.messages.get(b.message_id) == b


async def test_a_message_needs_an_existing_session(store: Store) -> None:
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.messages.add(make_message(make_session(), 1))


async def test_message_update_keeps_session_and_seq(store: Store) -> None:
    session = await add_session(store)
    message = make_message(session, 1)
    async with store.transaction() as uow:
        await uow.messages.add(message)
        await uow.messages.update(
            dataclasses.replace(message, status=MessageStatus.PARKED, attempts=1)
        )
    async with store.snapshot() as uow:
        stored = await uow.messages.get(message.message_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == (MessageStatus.PARKED, 1)
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.messages.update(dataclasses.replace(message, seq=2))
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.messages.update(make_message(session, 9))


async def test_for_session_orders_by_seq_and_filters(store: Store) -> None:
    session, other = await add_session(store), await add_session(store)
    statuses = [MessageStatus.APPLIED, MessageStatus.PARKED, MessageStatus.PENDING] * 3
    async with store.transaction() as uow:
        for seq in (5, 2, 9, 1, 7, 3, 8, 4, 6):
            await uow.messages.add(make_message(session, seq, status=statuses[seq - 1]))
        await uow.messages.add(make_message(other, 1))
    async with store.snapshot() as uow:
        every = await uow.messages.for_session(session.id)
        parked = await uow.messages.for_session(session.id, statuses=[MessageStatus.PARKED])
        tail = await uow.messages.for_session(session.id, after_seq=6, limit=2)
        mixed = await uow.messages.for_session(
            session.id, statuses=[MessageStatus.PARKED, MessageStatus.PENDING], after_seq=4
        )
    assert [m.seq for m in every] == list(range(1, 10))
    assert [m.seq for m in parked] == [2, 5, 8]
    assert [m.seq for m in tail] == [7, 8]
    assert [m.seq for m in mixed] == [5, 6, 8, 9]


async def test_retries_due(store: Store) -> None:
    session = await add_session(store)
    soon = make_message(session, 1, next_attempt_at=T0 + timedelta(seconds=10))
    later = make_message(session, 2, next_attempt_at=T0 + timedelta(seconds=60))
    done = make_message(
        session, 3, status=MessageStatus.APPLIED, next_attempt_at=T0 + timedelta(seconds=1)
    )
    async with store.transaction() as uow:
        for message in (later, soon, done, make_message(session, 4)):
            await uow.messages.add(message)
    async with store.snapshot() as uow:
        due = await uow.messages.retries_due(T0 + timedelta(seconds=30), limit=10)
        all_due = await uow.messages.retries_due(T0 + timedelta(hours=1), limit=10)
    assert due == [soon]
    assert all_due == [soon, later]


# --- outbox -------------------------------------------------------------------------------


def make_entry(n: int) -> OutboxRecord:
    return OutboxRecord(
        exchange="ds.calculator",
        routing_key=f"q{n % 4}",
        body=bytes([n % 256]) * 600,
        created_at=T0 + timedelta(seconds=n),
        headers={"seq": n, "kind": "session"},
        message_id=f"m{n}",
    )


async def test_outbox_claims_oldest_first_and_holds_claims(store: Store) -> None:
    async with store.transaction() as uow:
        added = [await uow.outbox.add(make_entry(n)) for n in range(5)]
    ids = [e.id for e in added]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    now, until = T0 + timedelta(seconds=100), T0 + timedelta(seconds=130)
    async with store.transaction() as uow:
        first = await uow.outbox.claim("relay-a", now, until, limit=3)
    async with store.transaction() as uow:
        second = await uow.outbox.claim("relay-b", now, until, limit=3)
    assert [e.id for e in first] == ids[:3]
    assert [e.id for e in second] == ids[3:]
    assert first[0].body == added[0].body
    assert first[0].headers == {"seq": 0, "kind": "session"}
    assert {e.claimed_by for e in first} == {"relay-a"}
    async with store.transaction() as uow:
        assert await uow.outbox.claim("relay-c", now, until, limit=3) == []
        expired = await uow.outbox.claim("relay-c", until, until + timedelta(seconds=30), 10)
    assert [e.id for e in expired] == ids


async def test_outbox_remove_and_stats(store: Store) -> None:
    async with store.snapshot() as uow:
        empty = await uow.outbox.stats()
    assert (empty.count, empty.oldest_created_at) == (0, None)
    async with store.transaction() as uow:
        added = [await uow.outbox.add(make_entry(n)) for n in range(3)]
        await uow.outbox.remove([added[0].id or 0])
    async with store.snapshot() as uow:
        stats = await uow.outbox.stats()
    assert stats.count == 2
    assert stats.oldest_created_at == added[1].created_at


async def test_concurrent_relays_never_claim_the_same_entry(store: Store) -> None:
    async with store.transaction() as uow:
        for n in range(40):
            await uow.outbox.add(make_entry(n))
    now, until = T0, T0 + timedelta(seconds=30)

    async def relay(name: str) -> list[int]:
        claimed: list[int] = []
        while True:
            async with store.transaction() as uow:
                batch = await uow.outbox.claim(name, now, until, limit=3)
            if not batch:
                return claimed
            claimed += [e.id or 0 for e in batch]

    results = await asyncio.gather(*(relay(f"relay-{i}") for i in range(4)))
    every = [i for r in results for i in r]
    assert len(every) == 40
    assert len(set(every)) == 40


# --- dead letters -------------------------------------------------------------------------


async def test_dead_letters_round_trip_update_and_find(store: Store) -> None:
    letters = [
        make_dead_letter(session_id="s1", seq=1, attempts=18, detail="ZeroDivisionError"),
        make_dead_letter(session_id="s1", seq=2, reason=DeadLetterReason.TERMINATED),
        make_dead_letter(session_id="s2", reason=DeadLetterReason.TERMINATED),
    ]
    async with store.transaction() as uow:
        for letter in letters:
            await uow.dead_letters.add(letter)
    replayed = dataclasses.replace(letters[0], replayed_at=T0, replay_message_id="m-new")
    async with store.transaction() as uow:
        await uow.dead_letters.update(replayed)
    async with store.snapshot() as uow:
        assert await uow.dead_letters.get(letters[0].id) == replayed
        assert await uow.dead_letters.get("missing") is None
        by_session = await uow.dead_letters.find(DeadLetterQuery(session_id="s1"))
        terminated = await uow.dead_letters.find(
            DeadLetterQuery(reason=DeadLetterReason.TERMINATED)
        )
        page = await uow.dead_letters.find(DeadLetterQuery(limit=1))
        rest = await uow.dead_letters.find(DeadLetterQuery(after_id=page[0].id))
    assert {d.id for d in by_session} == {letters[0].id, letters[1].id}
    assert {d.id for d in terminated} == {letters[1].id, letters[2].id}
    assert len(page) + len(rest) == 3
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.dead_letters.add(letters[1])
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.dead_letters.update(make_dead_letter())


# --- listener faults ----------------------------------------------------------------------


async def test_a_listener_fault_is_one_per_endpoint_until_removed(store: Store) -> None:
    fault = ListenerFault("notes", "m-1", "ValueError: bad", T0)
    async with store.transaction() as uow:
        await uow.listener_faults.add(fault)
        await uow.listener_faults.add(ListenerFault("audit", "m-2", "boom", T0))
    async with store.snapshot() as uow:
        assert await uow.listener_faults.get("notes") == fault
        assert await uow.listener_faults.get("other") is None
        assert [f.endpoint for f in await uow.listener_faults.all()] == ["audit", "notes"]
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.listener_faults.add(dataclasses.replace(fault, message_id="m-3"))
    async with store.transaction() as uow:
        assert await uow.listener_faults.get("notes", lock=True) == fault
        await uow.listener_faults.remove("notes")
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.listener_faults.remove("notes")
    async with store.snapshot() as uow:
        assert [f.endpoint for f in await uow.listener_faults.all()] == ["audit"]


# --- batches ------------------------------------------------------------------------------


async def test_batch_session_updates_check_every_version(store: Store) -> None:
    a, b = await add_session(store), await add_session(store)
    async with store.transaction() as uow:
        updated = await uow.sessions.update_many(
            [
                dataclasses.replace(a, last_applied_seq=1),
                dataclasses.replace(b, last_applied_seq=2),
            ]
        )
    assert [(s.id, s.version, s.last_applied_seq) for s in updated] == [
        (a.id, a.version + 1, 1),
        (b.id, b.version + 1, 2),
    ]
    with pytest.raises(ConcurrencyConflict):
        async with store.transaction() as uow:
            await uow.sessions.update_many([updated[0], dataclasses.replace(b, last_applied_seq=9)])
    with pytest.raises(ConcurrencyConflict):
        async with store.transaction() as uow:
            await uow.sessions.update_many([updated[0], updated[0]])
    async with store.snapshot() as uow:
        assert await uow.sessions.get_many([a.id, b.id]) == {a.id: updated[0], b.id: updated[1]}
    async with store.transaction() as uow:
        assert await uow.sessions.update_many([]) == []


async def test_batch_message_inserts_and_updates(store: Store) -> None:
    session = await add_session(store)
    batch = [make_message(session, seq) for seq in (1, 2, 3)]
    async with store.transaction() as uow:
        await uow.messages.add_many(batch)
        await uow.messages.add_many([])
    changed = [dataclasses.replace(m, status=MessageStatus.APPLIED, attempts=1) for m in batch]
    async with store.transaction() as uow:
        await uow.messages.update_many(changed)
    async with store.snapshot() as uow:
        stored = await uow.messages.for_session(session.id)
    assert stored == changed
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.messages.add_many([make_message(session, 4), make_message(session, 2)])
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.messages.update_many([changed[0], make_message(session, 7)])
    with pytest.raises(StoreError):
        async with store.transaction() as uow:
            await uow.messages.update_many([dataclasses.replace(changed[1], seq=8)])
    with pytest.raises(StoreError, match="twice"):
        async with store.transaction() as uow:
            await uow.messages.update_many([changed[0], changed[0]])
    async with store.snapshot() as uow:
        assert await uow.messages.by_seq(session.id, 4) is None


async def test_a_batch_update_writes_each_row_its_own_values(store: Store) -> None:
    sessions = [await add_session(store) for _ in range(3)]
    messages = [make_message(s, 1) for s in sessions]
    async with store.transaction() as uow:
        await uow.messages.add_many(messages)
    results: list[object] = [[7, 8], [1, "two", None], []]
    applied = [
        dataclasses.replace(
            m, status=MessageStatus.APPLIED, result=r, applied_at=T0 + timedelta(seconds=i)
        )
        for i, (m, r) in enumerate(zip(messages, results, strict=True))
    ]
    states: list[object] = [[{"n": 1}], None, "text"]
    async with store.transaction() as uow:
        locked = await uow.sessions.get_many([s.id for s in sessions], lock=SessionLock.BOTH)
        changed = [
            dataclasses.replace(
                locked[s.id], applied_count=i, instance_state=st, last_sent_seq=i * 10
            )
            for i, (s, st) in enumerate(zip(sessions, states, strict=True))
        ]
        written = await uow.sessions.update_many(changed)
        await uow.messages.update_many(applied)
    async with store.snapshot() as uow:
        assert await uow.sessions.get_many([s.id for s in sessions]) == {
            s.id: w for s, w in zip(sessions, written, strict=True)
        }
        assert [(await uow.messages.get(m.message_id)) for m in messages] == applied


async def test_successive_batch_updates_in_one_transaction_keep_every_change(
    store: Store,
) -> None:
    a, b = await add_session(store), await add_session(store)
    async with store.transaction() as uow:
        locked = await uow.sessions.get_many([a.id, b.id], lock=SessionLock.BOTH)
        first = await uow.sessions.update_many(
            [dataclasses.replace(locked[a.id], last_applied_seq=1, last_sent_seq=1), locked[b.id]]
        )
        second = await uow.sessions.update_many(
            [
                dataclasses.replace(first[0], instance_state={"n": 1}),
                dataclasses.replace(first[1], parked_count=5, instance_state={"n": 2}),
            ]
        )
        batch = [make_message(a, seq) for seq in (1, 2)]
        await uow.messages.add_many(batch)
        applied = [dataclasses.replace(m, status=MessageStatus.APPLIED) for m in batch]
        await uow.messages.update_many(applied)
        retried = [applied[0], dataclasses.replace(applied[1], attempts=2, result=[1, 2])]
        await uow.messages.update_many(retried)
    async with store.snapshot() as uow:
        assert await uow.sessions.get_many([a.id, b.id]) == {a.id: second[0], b.id: second[1]}
        assert await uow.messages.for_session(a.id) == retried
    assert (second[0].last_sent_seq, second[0].version) == (1, a.version + 2)
    assert second[1].version == b.version + 1
    with pytest.raises(ConcurrencyConflict):
        async with store.transaction() as uow:
            current = (await uow.sessions.get_many([a.id], lock=SessionLock.STATE))[a.id]
            await uow.sessions.update_many([dataclasses.replace(current, applied_count=1)])
            # The version it had before that update:
            await uow.sessions.update_many([dataclasses.replace(current, applied_count=2)])


async def test_batch_outbox_and_dead_letter_inserts(store: Store) -> None:
    async with store.transaction() as uow:
        first = await uow.outbox.add(make_entry(0))
        added = await uow.outbox.add_many([make_entry(n) for n in range(1, 6)])
        assert await uow.outbox.add_many([]) == []
    assert [e.message_id for e in added] == [f"m{n}" for n in range(1, 6)]
    ids = [first.id or 0] + [e.id or 0 for e in added]
    assert ids == sorted(ids)
    assert len(set(ids)) == 6
    letters = [make_dead_letter(), make_dead_letter()]
    async with store.transaction() as uow:
        await uow.dead_letters.add_many(letters)
    async with store.snapshot() as uow:
        assert await uow.dead_letters.get(letters[1].id) == letters[1]


async def test_a_lease_has_one_holder_until_it_runs_out(store: Store) -> None:
    later, much_later = T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)
    async with store.transaction() as uow:
        assert await uow.leases.take("single:a", "w1", T0, later) == LeaseRecord(
            "single:a", "w1", later
        )
        # Another holder gets the lease as it stands, while it runs.
        assert (await uow.leases.take("single:a", "w2", T0, much_later)).holder == "w1"
        await uow.leases.release("single:a", "w2")  # not w2's to end
    async with store.transaction() as uow:
        renewed = await uow.leases.take("single:a", "w1", later, much_later)
        assert renewed == LeaseRecord("single:a", "w1", much_later)
        assert (await uow.leases.take("single:b", "w2", T0, later)).holder == "w2"
    async with store.transaction() as uow:  # run out: the next taker gets it
        taken = await uow.leases.take("single:a", "w2", much_later, much_later + timedelta(1))
        assert taken.holder == "w2"
    with pytest.raises(RuntimeError):
        async with store.transaction() as uow:
            await uow.leases.release("single:a", "w2")
            raise RuntimeError("rolled back")
    async with store.transaction() as uow:
        assert (await uow.leases.take("single:a", "w3", much_later, much_later)).holder == "w2"
        await uow.leases.release("single:a", "w2")
    async with store.transaction() as uow:
        assert (await uow.leases.take("single:a", "w3", much_later, much_later)).holder == "w3"


async def test_keys_are_kept_by_name_and_prefix_and_revoked_at_once(store: Store) -> None:
    reader = KeyRecord("ci", Role.READER, "dsk_AAAAAAAAAAAA", "d" * 64, T0, contract="Calculator")
    async with store.transaction() as uow:
        await uow.keys.add(reader)
        await uow.keys.add(KeyRecord("bot", Role.SENDER, "dsk_BBBBBBBBBBBB", "e" * 64, T0))
    for clash in (
        dataclasses.replace(reader, prefix="dsk_CCCCCCCCCCCC"),  # the name
        dataclasses.replace(reader, name="other"),  # the prefix
    ):
        with pytest.raises(UniquenessViolation):
            async with store.transaction() as uow:
                await uow.keys.add(clash)
    later = T0 + timedelta(minutes=5)
    async with store.transaction() as uow:
        await uow.keys.used("ci", later)
        await uow.keys.used("gone", later)
    async with store.snapshot() as uow:
        assert await uow.keys.by_prefix("dsk_AAAAAAAAAAAA") == dataclasses.replace(
            reader, last_used_at=later
        )
        assert await uow.keys.get("ci") == dataclasses.replace(reader, last_used_at=later)
        assert [k.name for k in await uow.keys.all()] == ["bot", "ci"]
        assert await uow.keys.by_prefix("dsk_CCCCCCCCCCCC") is None
    async with store.transaction() as uow:
        assert await uow.keys.remove("ci") is True
        assert await uow.keys.remove("ci") is False
    async with store.snapshot() as uow:
        assert await uow.keys.get("ci") is None
        assert await uow.keys.by_prefix("dsk_AAAAAAAAAAAA") is None


async def test_a_session_keeps_its_opener_and_token_digest(store: Store) -> None:
    session = make_session(opened_by="dsk_AAAAAAAAAAAA", token_digest="f" * 64)
    async with store.transaction() as uow:
        await uow.sessions.add(session)
    async with store.snapshot() as uow:
        found = await uow.sessions.get(session.id)
    assert found is not None
    assert (found.opened_by, found.token_digest) == ("dsk_AAAAAAAAAAAA", "f" * 64)


async def test_a_nonce_is_seen_once_per_session_and_pruned_by_time(store: Store) -> None:
    async with store.transaction() as uow:
        await uow.nonces.add("s1", "n" * 24, 1000)
        await uow.nonces.add("s2", "n" * 24, 1000)  # another session's nonces are its own
        await uow.nonces.add("s1", "m" * 24, 2000)
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.nonces.add("s1", "n" * 24, 3000)
    async with store.transaction() as uow:
        assert await uow.nonces.prune("s1", 1500) == 1
    async with store.transaction() as uow:
        await uow.nonces.add("s1", "n" * 24, 3000)  # forgotten, so seen anew
    with pytest.raises(UniquenessViolation):
        async with store.transaction() as uow:
            await uow.nonces.add("s2", "n" * 24, 3000)


async def test_of_concurrent_claims_of_one_nonce_exactly_one_wins(store: Store) -> None:
    async def claim() -> bool:
        try:
            async with store.transaction() as uow:
                await uow.nonces.add("s1", "x" * 24, 1000)
                await asyncio.sleep(0.01)  # both in flight at once where the store allows it
        except UniquenessViolation:
            return False
        return True

    assert sorted(await asyncio.gather(*(claim() for _ in range(8)))) == [False] * 7 + [True]


# --- workers' heartbeats ----------------------------------------------------------------------


async def test_heartbeats_record_the_workers_seen_and_forget_old_ones(store: Store) -> None:
    from durable_sessions.model.records import WorkerRecord

    worker = WorkerRecord("w1", "host-a", 10, ("calculator",), T0, T0)
    other = WorkerRecord("w2", "host-b", 20, ("orders", "calculator"), T0, T0)
    async with store.transaction() as uow:
        await uow.workers.beat(worker)
        await uow.workers.beat(other)
        await uow.workers.beat(dataclasses.replace(worker, seen_at=T0 + timedelta(seconds=30)))
    async with store.snapshot() as uow:
        recent = await uow.workers.seen_since(T0 + timedelta(seconds=10))
        everyone = await uow.workers.seen_since(T0)
    assert recent == [dataclasses.replace(worker, seen_at=T0 + timedelta(seconds=30))]
    assert [w.id for w in everyone] == ["w1", "w2"]
    assert everyone[1].endpoints == ("orders", "calculator")
    async with store.transaction() as uow:
        await uow.workers.forget_before(T0 + timedelta(seconds=10))
        await uow.workers.forget("missing")
    async with store.snapshot() as uow:
        assert [w.id for w in await uow.workers.seen_since(T0)] == ["w1"]
    async with store.transaction() as uow:
        await uow.workers.forget("w1")
    async with store.snapshot() as uow:
        assert await uow.workers.seen_since(T0) == []


async def test_count_waiting_counts_the_dead_letters_not_replayed(store: Store) -> None:
    async with store.transaction() as uow:
        await uow.dead_letters.add(make_dead_letter())
        await uow.dead_letters.add(make_dead_letter(replayed_at=T0, replay_message_id="m"))
        await uow.dead_letters.add(make_dead_letter())
    async with store.snapshot() as uow:
        assert await uow.dead_letters.count_waiting() == 2
