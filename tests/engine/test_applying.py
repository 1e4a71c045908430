"""The apply engine, driven with synthetic deliveries: order, exactly once, parking, poison."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest
from pydantic import BaseModel

from durable_sessions.broker.base import Delivery
from durable_sessions.engine.applying import Applier
from durable_sessions.engine.batches import BatchOutcome, Received, Settlement
from durable_sessions.engine.control import ResumeAction, close_session, resume_session
from durable_sessions.engine.outbox import OutboxTransaction
from durable_sessions.engine.sending import open_session, send, send_datagram
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.flow import EndSession, RejectMessage, RetryLater
from durable_sessions.model.contracts import SessionMode, contract, operation
from durable_sessions.model.endpoints import Binding, Endpoint, PoisonPolicy, ReceiveErrorHandling
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    DeadLetterReason,
    MessageStatus,
    OutboxRecord,
    SessionRecord,
)
from durable_sessions.model.services import (
    Concurrency,
    Instancing,
    ServiceSpec,
    service,
    service_of,
)
from durable_sessions.model.topology import POISON_KEY
from durable_sessions.model.wire import WireMessage
from durable_sessions.store.base import DeadLetterQuery, Store
from durable_sessions.store.memory import MemoryStore
from durable_sessions.store.sql.store import SqlStore
from tests.stacks import empty_postgres

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAST = PoisonPolicy(receive_retry_count=1, max_retry_cycles=1, retry_cycle_delay_s=10.0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def delivery(entry: OutboxRecord | bytes, count: int = 0) -> Delivery:
    body = entry if isinstance(entry, bytes) else entry.body
    return Delivery(
        body=body,
        headers={},
        routing_key="session.0",
        queue="q",
        redelivered=count > 0,
        delivery_count=count,
    )


class Harness:
    """A calculator endpoint on the memory store, fed by hand-made deliveries."""

    def __init__(
        self,
        spec: ServiceSpec,
        poison: PoisonPolicy = FAST,
        binding: Binding | None = None,
        store: Store | None = None,
    ) -> None:
        self.store = store or MemoryStore()
        self.clock = Clock()
        self.endpoint = Endpoint.for_service(spec, poison=poison, binding=binding)
        self.applier = Applier(self.endpoint, spec)
        self.entries: dict[int, OutboxRecord] = {}
        self.published: list[OutboxRecord] = []

    async def open(self) -> SessionRecord:
        async with self.store.transaction() as uow:
            return await open_session(
                uow, self.endpoint, self.clock.now, inactivity_timeout_s=600, ttl_s=None
            )

    async def send(self, session: SessionRecord, operation: str, **args: object) -> OutboxRecord:
        async with self.store.transaction() as uow:
            sent = await send(
                OutboxTransaction(uow), self.endpoint, session.id, operation, args, self.clock.now
            )
        assert sent.outbox is not None
        self.entries[sent.message.seq or 0] = sent.outbox
        return sent.outbox

    async def apply(self, *deliveries: Delivery) -> BatchOutcome:
        """Apply one batch; what it published is kept in ``published``."""
        async with self.store.transaction() as uow:
            tx = OutboxTransaction(uow)
            outcome = await self.applier.apply(
                tx, [Received.decode(d) for d in deliveries], self.clock.now
            )
        self.published = tx.published
        return outcome

    async def session(self, session_id: str) -> SessionRecord:
        async with self.store.snapshot() as uow:
            found = await uow.sessions.get(session_id)
        assert found is not None
        return found

    async def status(self, session: SessionRecord, seq: int) -> MessageStatus:
        async with self.store.snapshot() as uow:
            message = await uow.messages.by_seq(session.id, seq)
        assert message is not None
        return message.status

    async def dead_letters(self) -> list[DeadLetterReason]:
        async with self.store.snapshot() as uow:
            return [d.reason for d in await uow.dead_letters.find(DeadLetterQuery())]


@pytest.fixture
def calc() -> Harness:
    return Harness(service_of(CalculatorService))


async def calculation(h: Harness) -> tuple[SessionRecord, list[OutboxRecord]]:
    session = await h.open()
    entries = [
        await h.send(session, "clear"),
        await h.send(session, "add_to", n=5),
        await h.send(session, "multiply_by", n=3),
        await h.send(session, "subtract_from", n=1),
        await h.send(session, "equals"),
    ]
    return session, entries


async def result_of(h: Harness, session: SessionRecord, seq: int) -> object:
    async with h.store.snapshot() as uow:
        message = await uow.messages.by_seq(session.id, seq)
    assert message is not None
    assert message.status is MessageStatus.APPLIED
    return message.result


async def test_in_order_batch_applies_everything_and_ends_the_session(calc: Harness) -> None:
    session, entries = await calculation(calc)
    outcome = await calc.apply(*map(delivery, entries))
    assert (outcome.applied, outcome.duplicates, outcome.parked) == (5, 0, 0)
    assert outcome.settlements == {}
    stored = await calc.session(session.id)
    assert stored.state is SessionState.CLOSED
    assert (stored.last_applied_seq, stored.applied_count) == (5, 5)
    assert stored.instance_state == {"result": 14.0}
    assert await result_of(calc, session, 5) == 14.0


async def test_reversed_batch_applies_in_seq_order(calc: Harness) -> None:
    session, entries = await calculation(calc)
    await calc.apply(*map(delivery, reversed(entries)))
    assert await result_of(calc, session, 5) == 14.0


async def test_early_arrivals_park_until_the_gap_fills(calc: Harness) -> None:
    session, entries = await calculation(calc)
    first = await calc.apply(delivery(entries[3]), delivery(entries[2]))
    assert first.parked == 2
    assert await calc.status(session, 3) is MessageStatus.PARKED
    parked = await calc.session(session.id)
    assert (parked.parked_count, parked.last_applied_seq) == (2, 0)
    await calc.apply(delivery(entries[1]))
    assert (await calc.session(session.id)).parked_count == 3
    outcome = await calc.apply(delivery(entries[0]))
    assert outcome.applied == 4
    stored = await calc.session(session.id)
    assert (stored.parked_count, stored.last_applied_seq) == (0, 4)
    assert stored.instance_state == {"result": 14.0}


@pytest.mark.postgres
async def test_a_message_parked_while_waiting_for_the_session_lock_is_seen_parked(
    postgres_url: str,
) -> None:
    # Two workers get copies of the same early message. The first parks it and commits while
    # the second waits for the session lock; the second must then see it parked, not park it
    # again (which counted it twice and left the closed session with a parked count).
    await empty_postgres(postgres_url)
    store = SqlStore.from_url(postgres_url)
    try:
        h = Harness(service_of(CalculatorService), store=store)
        session, entries = await calculation(h)
        async with store.transaction() as second:
            lock_sessions = second.sessions.get_many

            async def first_parks_it_meanwhile(
                ids: list[str], *, lock: bool = False
            ) -> dict[str, SessionRecord]:
                if lock:
                    assert (await h.apply(delivery(entries[2]))).parked == 1
                return await lock_sessions(ids, lock=lock)

            second.sessions.get_many = first_parks_it_meanwhile  # type: ignore[method-assign]
            await h.applier.apply(
                OutboxTransaction(second),
                [Received.decode(delivery(entries[2], count=1))],
                h.clock.now,
            )
        assert (await h.session(session.id)).parked_count == 1
        await h.apply(*map(delivery, entries[:2] + entries[3:]))
        stored = await h.session(session.id)
        assert (stored.state, stored.parked_count, stored.applied_count) == (
            SessionState.CLOSED,
            0,
            5,
        )
        assert stored.instance_state == {"result": 14.0}
    finally:
        await store.close()


async def test_duplicates_are_acked_counted_and_never_applied_twice(calc: Harness) -> None:
    session, entries = await calculation(calc)
    await calc.apply(*map(delivery, entries[:3]))
    again = await calc.apply(delivery(entries[1], 1), delivery(entries[2], 1), delivery(entries[3]))
    assert (again.applied, again.duplicates) == (1, 2)
    same_batch = await calc.apply(delivery(entries[4]), delivery(entries[4], 1))
    assert (same_batch.applied, same_batch.duplicates) == (1, 1)
    stored = await calc.session(session.id)
    assert stored.duplicate_count == 3
    assert stored.instance_state == {"result": 14.0}


async def test_a_delivery_without_its_inbox_row_is_recorded_then_applied(calc: Harness) -> None:
    session = await calc.open()
    wire = WireMessage("calculator", "Calculator", "external-1", "clear", {}, session.id, 1)
    outcome = await calc.apply(delivery(wire.encode()))
    assert outcome.applied == 1
    assert await calc.status(session, 1) is MessageStatus.APPLIED


async def test_non_initiating_first_message_is_dead_lettered_and_nothing_applies(
    calc: Harness,
) -> None:
    session = await calc.open()
    add = WireMessage("calculator", "Calculator", "m1", "add_to", {"n": 7}, session.id, 1)
    clear = WireMessage("calculator", "Calculator", "m2", "clear", {}, session.id, 2)
    add2 = WireMessage("calculator", "Calculator", "m3", "add_to", {"n": 1}, session.id, 3)
    outcome = await calc.apply(*(delivery(w.encode()) for w in (add, clear, add2)))
    assert (outcome.applied, outcome.dead) == (2, 1)
    assert await calc.dead_letters() == [DeadLetterReason.NOT_INITIATING]
    stored = await calc.session(session.id)
    assert stored.instance_state == {"result": 1.0}
    assert stored.dead_count == 1


async def test_undeliverable_messages_become_dead_letters(calc: Harness) -> None:
    session = await calc.open()
    bad = [
        b"not json",
        json.dumps({"v": 1}).encode(),
        WireMessage("calculator", "Calculator", "x1", "clear", {}, "no-such-session", 1).encode(),
        WireMessage("elsewhere", "Calculator", "x2", "clear", {}, session.id, 1).encode(),
    ]
    outcome = await calc.apply(*(delivery(b) for b in bad))
    assert outcome.dead == 4
    assert outcome.settlements == {}
    assert await calc.dead_letters() == [DeadLetterReason.UNDELIVERABLE] * 4


async def test_a_reused_message_id_does_not_break_the_batch(calc: Harness) -> None:
    session, entries = await calculation(calc)
    clash = WireMessage("calculator", "Calculator", "other-id", "clear", {}, session.id, 1)
    outcome = await calc.apply(delivery(clash.encode()), delivery(entries[0]))
    assert (outcome.applied, outcome.dead) == (1, 1)


async def test_messages_after_the_terminating_call_are_dead_lettered(calc: Harness) -> None:
    session, entries = await calculation(calc)
    late = WireMessage("calculator", "Calculator", "late", "add_to", {"n": 1}, session.id, 6)
    outcome = await calc.apply(*map(delivery, entries), delivery(late.encode()))
    assert (outcome.applied, outcome.dead) == (5, 1)
    assert await calc.dead_letters() == [DeadLetterReason.SESSION_NOT_OPEN]


async def test_graceful_close_applies_pending_then_closes(calc: Harness) -> None:
    session = await calc.open()
    entries = [await calc.send(session, "clear"), await calc.send(session, "add_to", n=2)]
    async with calc.store.transaction() as uow:
        closing = await close_session(uow, session.id, calc.clock.now)
    assert closing.state is SessionState.CLOSING
    await calc.apply(delivery(entries[0]))
    assert (await calc.session(session.id)).state is SessionState.CLOSING
    await calc.apply(delivery(entries[1]))
    assert (await calc.session(session.id)).state is SessionState.CLOSED


# --- poison handling -----------------------------------------------------------------------


async def poisoned(h: Harness) -> tuple[SessionRecord, list[OutboxRecord]]:
    session = await h.open()
    entries = [
        await h.send(session, "clear"),
        await h.send(session, "add_to", n=6),
        await h.send(session, "divide_by", n=0),
        await h.send(session, "add_to", n=1),
        await h.send(session, "equals"),
    ]
    return session, entries


async def exhaust(h: Harness, entry: OutboxRecord) -> BatchOutcome:
    """Deliver the poison message once per cycle until its retries are exhausted."""
    outcome = await h.apply(delivery(entry))
    for _ in range(h.endpoint.poison.max_retry_cycles):
        h.clock.advance(h.endpoint.poison.retry_cycle_delay_s)
        outcome = await h.apply(delivery(entry, 1))
    return outcome


async def test_a_failing_message_waits_for_its_next_cycle(calc: Harness) -> None:
    session, entries = await poisoned(calc)
    await calc.apply(*map(delivery, entries))
    async with calc.store.snapshot() as uow:
        failing = await uow.messages.by_seq(session.id, 3)
    assert failing is not None
    assert failing.status is MessageStatus.PENDING
    assert failing.attempts == FAST.attempts_per_cycle
    assert failing.error == "ZeroDivisionError: float division by zero"
    assert failing.next_attempt_at == calc.clock.now + timedelta(seconds=10)
    stored = await calc.session(session.id)
    assert (stored.last_applied_seq, stored.parked_count) == (2, 2)
    early = await calc.apply(delivery(entries[2], 1))
    assert early.applied == 0
    async with calc.store.snapshot() as uow:
        unchanged = await uow.messages.by_seq(session.id, 3)
    assert unchanged == failing


async def test_fault_stops_the_session_and_resume_retry_or_skip(calc: Harness) -> None:
    session, entries = await poisoned(calc)
    await calc.apply(*map(delivery, entries[:2]))
    await exhaust(calc, entries[2])
    await calc.apply(delivery(entries[3]), delivery(entries[4]))
    stored = await calc.session(session.id)
    assert stored.state is SessionState.FAULTED
    assert (stored.fault_seq, stored.fault_reason) == (
        3,
        "ZeroDivisionError: float division by zero",
    )
    assert await calc.status(session, 3) is MessageStatus.FAILED
    assert await calc.status(session, 4) is MessageStatus.PARKED
    assert stored.instance_state == {"result": 6.0}
    async with calc.store.snapshot() as uow:
        failed = await uow.messages.by_seq(session.id, 3)
    assert failed is not None
    assert failed.attempts == FAST.max_attempts

    async with calc.store.transaction() as uow:
        tx = OutboxTransaction(uow)
        resumed = await resume_session(
            tx, calc.endpoint, session.id, ResumeAction.RETRY, calc.clock.now
        )
    republish = tx.published
    assert resumed.state is SessionState.OPEN
    assert resumed.fault_seq is None
    assert [json.loads(e.body)["seq"] for e in republish] == [3]
    await exhaust(calc, republish[0])
    assert (await calc.session(session.id)).state is SessionState.FAULTED

    async with calc.store.transaction() as uow:
        tx = OutboxTransaction(uow)
        await resume_session(tx, calc.endpoint, session.id, ResumeAction.SKIP, calc.clock.now)
    republish = tx.published
    assert [json.loads(e.body)["seq"] for e in republish] == [4]
    await calc.apply(delivery(republish[0]))
    done = await calc.session(session.id)
    assert done.state is SessionState.CLOSED
    assert done.instance_state == {"result": 7.0}
    assert await result_of(calc, session, 5) == 7.0
    assert await calc.dead_letters() == [DeadLetterReason.SKIPPED]


@pytest.mark.parametrize(
    ("handling", "status", "reason", "settlement"),
    [
        (ReceiveErrorHandling.DROP, MessageStatus.FAILED, None, None),
        (
            ReceiveErrorHandling.REJECT,
            MessageStatus.DEAD,
            DeadLetterReason.REJECTED,
            Settlement.REJECT,
        ),
        (ReceiveErrorHandling.MOVE, MessageStatus.DEAD, DeadLetterReason.POISON, None),
    ],
)
async def test_drop_reject_and_move_let_the_session_go_on(
    handling: ReceiveErrorHandling,
    status: MessageStatus,
    reason: DeadLetterReason | None,
    settlement: Settlement | None,
) -> None:
    h = Harness(
        service_of(CalculatorService), dataclasses.replace(FAST, receive_error_handling=handling)
    )
    session, entries = await poisoned(h)
    await h.apply(*map(delivery, entries[:2]))
    last = await exhaust(h, entries[2])
    assert last.settlements.get(0) == settlement
    assert await h.status(session, 3) is status
    moved = [e for e in h.published if e.routing_key == POISON_KEY]
    assert len(moved) == (1 if handling is ReceiveErrorHandling.MOVE else 0)
    await h.apply(delivery(entries[3]), delivery(entries[4]))
    stored = await h.session(session.id)
    assert stored.state is SessionState.CLOSED
    assert await result_of(h, session, 5) == 7.0
    assert await h.dead_letters() == ([] if reason is None else [reason])


async def test_a_message_that_keeps_crashing_its_worker_counts_as_failed_cycles(
    calc: Harness,
) -> None:
    session = await calc.open()
    entry = await calc.send(session, "clear")
    outcome = await calc.apply(delivery(entry, count=10))
    assert outcome.applied == 0
    async with calc.store.snapshot() as uow:
        message = await uow.messages.by_seq(session.id, 1)
    assert message is not None
    assert message.attempts == FAST.attempts_per_cycle
    assert "crashing the worker" in (message.error or "")


# --- handler control flow and datagrams ----------------------------------------------------


@contract(session_mode=SessionMode.REQUIRED)
class Tasks(Protocol):
    @operation
    async def start(self) -> None: ...

    @operation(initiating=False)
    async def step(self, kind: str) -> None: ...

    @operation(initiating=False)
    async def count(self) -> int: ...


@service(Tasks)
class TaskService(BaseModel):
    steps: int = 0

    async def start(self) -> None:
        self.steps = 0

    async def step(self, kind: str) -> None:
        self.steps += 1
        if kind == "later":
            raise RetryLater(5)
        if kind == "reject":
            raise RejectMessage("not wanted")
        if kind == "end":
            raise EndSession

    async def count(self) -> int:
        return self.steps


async def test_retry_later_waits_without_counting_a_failure() -> None:
    h = Harness(service_of(TaskService))
    session = await h.open()
    entries = [await h.send(session, "start"), await h.send(session, "step", kind="later")]
    await h.apply(*map(delivery, entries))
    async with h.store.snapshot() as uow:
        message = await uow.messages.by_seq(session.id, 2)
    assert message is not None
    assert (message.status, message.attempts) == (MessageStatus.PENDING, 0)
    assert message.next_attempt_at == h.clock.now + timedelta(seconds=5)
    assert (await h.session(session.id)).instance_state == {"steps": 0}


async def test_reject_message_dead_letters_and_goes_on() -> None:
    h = Harness(service_of(TaskService))
    session = await h.open()
    entries = [
        await h.send(session, "start"),
        await h.send(session, "step", kind="reject"),
        await h.send(session, "step", kind="ok"),
    ]
    await h.apply(*map(delivery, entries))
    assert await h.dead_letters() == [DeadLetterReason.REJECTED]
    assert (await h.session(session.id)).instance_state == {"steps": 1}


async def test_end_session_keeps_the_changes_and_closes() -> None:
    h = Harness(service_of(TaskService))
    session = await h.open()
    entries = [await h.send(session, "start"), await h.send(session, "step", kind="end")]
    await h.apply(*map(delivery, entries))
    stored = await h.session(session.id)
    assert stored.state is SessionState.CLOSED
    assert stored.instance_state == {"steps": 1}


@contract(session_mode=SessionMode.NOT_ALLOWED)
class Audit(Protocol):
    @operation
    async def record(self, entry: str) -> None: ...


class AuditLog:
    entries: list[str] = []  # noqa: RUF012 (shared on purpose: PER_CALL instances are fresh)


@service(Audit, concurrency=Concurrency.MULTIPLE)
class AuditService:
    async def record(self, entry: str) -> None:
        if entry == "boom":
            raise RuntimeError("boom")
        AuditLog.entries.append(entry)


@pytest.mark.parametrize("handling", [ReceiveErrorHandling.FAULT, ReceiveErrorHandling.MOVE])
async def test_datagrams_apply_once_and_poison_by_policy(handling: ReceiveErrorHandling) -> None:
    AuditLog.entries = []
    h = Harness(
        service_of(AuditService), dataclasses.replace(FAST, receive_error_handling=handling)
    )
    assert h.endpoint.binding is Binding.DATAGRAM
    assert service_of(AuditService).instancing is Instancing.PER_CALL
    sent = []
    for entry in ("a", "b", "boom"):
        async with h.store.transaction() as uow:
            result = await send_datagram(
                OutboxTransaction(uow), h.endpoint, "record", {"entry": entry}, h.clock.now
            )
        assert result.outbox is not None
        sent.append(result.outbox)
    first = await h.apply(*map(delivery, sent), delivery(sent[0], 1))
    assert (first.applied, first.duplicates) == (2, 1)
    again = await h.apply(delivery(sent[1], 1))
    assert again.duplicates == 1
    assert sorted(AuditLog.entries) == ["a", "b"]
    h.clock.advance(10)
    final = await h.apply(delivery(sent[2], 1))
    async with h.store.snapshot() as uow:
        fault = await uow.listener_faults.get(h.endpoint.name)
        (kept,) = (await uow.messages.get_many([sent[2].message_id])).values()
    if handling is ReceiveErrorHandling.MOVE:
        assert (final.dead, final.listener_faulted, fault) == (1, False, None)
        assert await h.dead_letters() == [DeadLetterReason.POISON]
        return
    # WCF's Fault faults the listener at the poison message, which is kept, not dead-lettered.
    assert (final.dead, final.failed, final.listener_faulted) == (0, 1, True)
    assert await h.dead_letters() == []
    assert kept.status is MessageStatus.FAILED
    assert fault is not None
    assert (fault.message_id, fault.reason) == (sent[2].message_id, "RuntimeError: boom")
    # While it is faulted, datagrams are held back, unsettled and unapplied.
    held = await h.apply(delivery(sent[0], 2))
    assert (held.applied, held.duplicates, held.settlements) == (0, 0, {0: Settlement.HOLD})


@contract
class Tally(Protocol):
    @operation
    async def bump(self) -> int: ...


class TallyCalls:
    events: list[str] = []  # noqa: RUF012 (what every call did, in the order it did it)


@service(Tally, instancing=Instancing.SINGLE)
class TallyService:
    def __init__(self) -> None:
        self.count = 0

    async def bump(self) -> int:
        TallyCalls.events.append("enter")
        seen = self.count
        await asyncio.sleep(0.01)  # mid-update: a call that overlapped would read `seen` too
        self.count = seen + 1
        TallyCalls.events.append("exit")
        return self.count


async def test_single_instancing_shares_one_instance_across_sessions() -> None:
    # InstanceContextMode.Single with ConcurrencyMode.Single: one instance, one call at a time.
    TallyCalls.events = []
    h = Harness(service_of(TallyService))
    sessions = [await h.open() for _ in range(5)]
    entries = [await h.send(s, "bump") for s in sessions for _ in range(2)]
    await h.apply(*map(delivery, entries))
    results = {(s.id, seq): await result_of(h, s, seq) for s in sessions for seq in (1, 2)}
    assert sorted(results.values()) == list(range(1, 11))
    assert TallyCalls.events == ["enter", "exit"] * 10
    assert all(results[s.id, 1] < results[s.id, 2] for s in sessions)
    assert (await h.session(sessions[0].id)).instance_state is None


@pytest.mark.postgres
async def test_a_datagram_delivered_to_two_workers_at_once_is_applied_once(
    postgres_url: str,
) -> None:
    # A datagram has no session row: its own inbox row must keep a copy held by another
    # worker waiting until the first worker's transaction ends, then see it applied.
    AuditLog.entries = []
    await empty_postgres(postgres_url)
    store = SqlStore.from_url(postgres_url)
    try:
        h = Harness(service_of(AuditService), store=store)
        async with store.transaction() as uow:
            sent = await send_datagram(
                OutboxTransaction(uow), h.endpoint, "record", {"entry": "once"}, h.clock.now
            )
        assert sent.outbox is not None
        async with store.transaction() as first:
            applied = await h.applier.apply(
                OutboxTransaction(first), [Received.decode(delivery(sent.outbox))], h.clock.now
            )
            copy = asyncio.create_task(h.apply(delivery(sent.outbox, 1)))
            await asyncio.sleep(0.3)
            assert not copy.done(), "the copy did not wait for the first transaction"
        duplicate = await copy
        assert (applied.applied, duplicate.applied, duplicate.duplicates) == (1, 0, 1)
        assert AuditLog.entries == ["once"]
    finally:
        await store.close()
