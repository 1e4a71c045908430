"""The behaviour suite of a served session: the same tests on the twins and on RabbitMQ + SQL."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

import pytest
from pydantic import BaseModel

from durable_sessions.engine.client import Client
from durable_sessions.engine.control import ResumeAction, resume_session
from durable_sessions.engine.listeners import resume_listener
from durable_sessions.engine.outbox import OutboxTransaction, publish_after_commit
from durable_sessions.engine.sending import SendRequest, open_session, send
from durable_sessions.errors import (
    ListenerNotFaulted,
    NotInitiating,
    OperationFailed,
    SessionNotOpen,
    TerminatingOperationCalled,
)
from durable_sessions.examples.calculator import Calculator, CalculatorService
from durable_sessions.hosting.testing import FAST_POISON
from durable_sessions.model.contracts import SessionMode, contract, operation
from durable_sessions.model.endpoints import Endpoints, PoisonPolicy, ReceiveErrorHandling
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    DeadLetterReason,
    MessageRecord,
    MessageStatus,
    SessionRecord,
    utcnow,
)
from durable_sessions.model.services import service
from durable_sessions.store.base import DeadLetterQuery, SessionQuery
from tests.e2e.journal import Journal, JournalService
from tests.modes import Tally, TallyService
from tests.stacks import Stack

pytestmark = pytest.mark.timeout(90)


async def wait_for(predicate: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def session_of(stack: Stack, session_id: str) -> SessionRecord:
    async with stack.store.snapshot() as uow:
        found = await uow.sessions.get(session_id)
    assert found is not None
    return found


async def test_calculator_session_end_to_end(stack: Stack) -> None:
    endpoint = stack.endpoint(CalculatorService)
    runtime = await stack.runtime([(endpoint, CalculatorService)])
    context = runtime.client.session(Calculator, endpoint=endpoint.name)
    async with context as calc:
        await calc.clear()
        await calc.add_to(5)
        await calc.multiply_by(3)
        await calc.subtract_from(1)
        assert await calc.equals() == 14.0
    stored = await session_of(stack, context.id)
    assert stored.state is SessionState.CLOSED
    assert (stored.last_sent_seq, stored.last_applied_seq, stored.applied_count) == (5, 5, 5)
    assert stored.instance_state == {"result": 14.0}


async def test_an_allowed_contract_is_served_to_sessions_and_datagrams(stack: Stack) -> None:
    endpoint = stack.endpoint(TallyService)
    runtime = await stack.runtime([(endpoint, TallyService)])
    client = runtime.client
    async with client.session(Tally, endpoint=endpoint.name) as tally:
        await tally.add(2)
        await tally.add(3)
        assert await tally.total() == 5
    sent = await client.send(SendRequest(endpoint, None, "add", {"n": 7}))
    datagram = await client.wait(sent.message.message_id, timeout_s=20)
    assert (datagram.status, datagram.session_id, datagram.seq) == (
        MessageStatus.APPLIED,
        None,
        None,
    )
    # A datagram of a PER_SESSION service is a call of its own, on a fresh instance (WCF's rule).
    assert await client.datagrams(Tally, endpoint=endpoint.name).total() == 0


async def test_many_sessions_through_competing_workers_apply_in_order(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    served = [(endpoint, JournalService)]
    first = await stack.runtime(served)
    await stack.runtime(served)
    rng = random.Random(7)
    plans = {f"s{i}": [rng.randrange(1000) for _ in range(12)] for i in range(40)}

    async def conversation(name: str, values: list[int]) -> list[int]:
        async with first.client.session(Journal, endpoint=endpoint.name) as journal:
            await journal.begin(name)
            for value in values:
                await journal.write(value)
            return await journal.finish()

    results = await asyncio.gather(*(conversation(n, v) for n, v in plans.items()))
    assert results == list(plans.values())


async def test_client_checks_wcf_rules_before_sending(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    runtime = await stack.runtime([(endpoint, JournalService)])
    context = runtime.client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    with pytest.raises(NotInitiating, match="cannot be the first operation"):
        await journal.write(1)
    assert (await session_of(stack, context.id)).last_sent_seq == 0
    await journal.begin("rules")
    assert await journal.finish() == []
    with pytest.raises(TerminatingOperationCalled, match="'finish' has already been called"):
        await journal.write(2)
    assert (await session_of(stack, context.id)).last_sent_seq == 2
    await context.close()

    other = runtime.client.session(Journal, endpoint=endpoint.name)
    journal = await other.open()
    await journal.begin("closed")
    await other.close()
    with pytest.raises(SessionNotOpen):
        await journal.write(3)


async def test_a_failing_two_way_call_raises_and_faults_then_resumes(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService, poison=FAST_POISON)
    runtime = await stack.runtime([(endpoint, JournalService)])
    context = runtime.client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("faulty")
    await journal.write(1)
    with pytest.raises(OperationFailed, match="ValueError: on purpose"):
        await journal.fail("on purpose")
    with pytest.raises(SessionNotOpen, match="is faulted"):
        await journal.write(2)
    faulted = await session_of(stack, context.id)
    assert faulted.state is SessionState.FAULTED
    assert (faulted.fault_seq, faulted.fault_reason) == (3, "ValueError: on purpose")

    async with publish_after_commit(stack.store, runtime.relay, utcnow()) as tx:
        await resume_session(tx, endpoint, context.id, ResumeAction.SKIP, utcnow())
    await journal.write(2)
    assert await journal.finish() == [1, 2]


async def test_abort_terminates_and_dead_letters_what_is_pending(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    client = Client(stack.store, Endpoints([endpoint]))
    context = client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("aborted")
    await journal.write(1)
    await context.abort("changed my mind")
    stored = await session_of(stack, context.id)
    assert stored.state is SessionState.TERMINATED
    assert (stored.end_reason, stored.dead_count) == ("changed my mind", 2)
    async with stack.store.snapshot() as uow:
        letters = await uow.dead_letters.find(DeadLetterQuery(session_id=context.id))
    assert {d.reason for d in letters} == {DeadLetterReason.TERMINATED}
    runtime = await stack.runtime([(endpoint, JournalService)])
    await runtime.relay.drain()
    await asyncio.sleep(0.3)
    assert (await session_of(stack, context.id)).applied_count == 0


async def test_injected_duplicates_and_reordering_change_nothing(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    values = list(range(10))
    async with stack.store.transaction() as uow:
        session = await open_session(uow, endpoint, utcnow(), inactivity_timeout_s=600, ttl_s=None)
    entries = []
    for operation_name, args in [("begin", {"name": "x"})] + [
        ("write", {"value": v}) for v in values
    ]:
        async with stack.store.transaction() as uow:
            sent = await send(
                OutboxTransaction(uow), endpoint, session.id, operation_name, args, utcnow()
            )
        assert sent.outbox is not None
        entries.append(sent.outbox)
    scrambled = list(reversed(entries)) + entries[3:7] + entries[::2]
    injector = await stack.connect()
    await injector.declare(endpoint.topology)
    confirmed = await injector.publish([dataclasses.replace(e, id=None) for e in scrambled])
    assert all(confirmed)
    await injector.close()
    await stack.runtime([(endpoint, JournalService)])

    async def applied() -> bool:
        return (await session_of(stack, session.id)).last_applied_seq == len(entries)

    await wait_for(applied)
    await asyncio.sleep(0.3)
    stored = await session_of(stack, session.id)
    assert stored.instance_state == {"name": "x", "values": values}
    assert stored.applied_count == len(entries)
    assert stored.duplicate_count >= len(scrambled) - len(entries)


async def test_graceful_close_applies_what_was_sent(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    client = Client(stack.store, Endpoints([endpoint]))
    context = client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("closing")
    await journal.write(7)
    await context.close()
    assert (await session_of(stack, context.id)).state is SessionState.CLOSING
    await stack.runtime([(endpoint, JournalService)])

    async def closed() -> bool:
        return (await session_of(stack, context.id)).state is SessionState.CLOSED

    await wait_for(closed)
    assert (await session_of(stack, context.id)).instance_state == {
        "name": "closing",
        "values": [7],
    }


async def test_queued_messages_wait_for_an_offline_service(stack: Stack) -> None:
    """WCF: a queued message waits for the service up to its TimeToLive; receiveTimeout (the
    inactivity timeout) counts only while the service waits for the client."""
    endpoint = stack.endpoint(JournalService)
    client = Client(stack.store, Endpoints([endpoint]), inactivity_timeout_s=0.2)
    context = client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("patient")
    await journal.write(1)
    await asyncio.sleep(0.4)  # no worker runs: the messages wait, the session is not idle
    offline = await stack.runtime([(endpoint, JournalService)], start=False)
    assert (await offline.sweeper.sweep()).expired == 0
    await stack.runtime([(endpoint, JournalService)])

    async def ended() -> bool:
        return (await session_of(stack, context.id)).state.is_final

    await wait_for(ended)  # once applied, the session waits for the client, and times out
    stored = await session_of(stack, context.id)
    assert (stored.state, stored.last_applied_seq) == (SessionState.EXPIRED, 2)
    assert stored.instance_state == {"name": "patient", "values": [1]}
    assert "inactivity timeout of 0.2 s" in (stored.end_reason or "")
    async with stack.store.snapshot() as uow:
        assert await uow.dead_letters.find(DeadLetterQuery(session_id=context.id)) == []


async def test_the_time_to_live_ends_a_session_whose_messages_wait(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    client = Client(stack.store, Endpoints([endpoint]), inactivity_timeout_s=0.2, ttl_s=2.0)
    context = client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("sleepy")
    await asyncio.sleep(0.4)
    runtime = await stack.runtime([(endpoint, JournalService)], start=False)
    assert (await runtime.sweeper.sweep()).expired == 0, "idle, but its message waits"
    opened = (await session_of(stack, context.id)).created_at
    await asyncio.sleep(max(0.0, (opened - utcnow()).total_seconds() + 2.1))
    assert (await runtime.sweeper.sweep()).expired == 1
    stored = await session_of(stack, context.id)
    assert stored.state is SessionState.EXPIRED
    assert "time to live of 2 s" in (stored.end_reason or "")
    async with stack.store.snapshot() as uow:
        letters = await uow.dead_letters.find(DeadLetterQuery(session_id=context.id))
        expired = await uow.sessions.find(SessionQuery(state=SessionState.EXPIRED))
    assert [d.reason for d in letters] == [DeadLetterReason.EXPIRED]
    assert [s.id for s in expired] == [context.id]


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


async def test_retry_cycles_outlive_the_inactivity_timeout(stack: Stack) -> None:
    """NetMsmqBinding's defaults: 6 attempts a cycle, 2 retry cycles 30 minutes apart, then
    fault; the 10-minute inactivity timeout never cuts a retry cycle wait short."""
    clock = FrozenClock()
    endpoint = stack.endpoint(CalculatorService, poison=PoisonPolicy())
    runtime = await stack.runtime([(endpoint, CalculatorService)], clock=clock)
    context = runtime.client.session(Calculator, endpoint=endpoint.name)
    calc = await context.open()
    await calc.clear()
    await calc.divide_by(0)

    async def failing() -> MessageRecord:
        async with stack.store.snapshot() as uow:
            found = await uow.messages.by_seq(context.id, 2)
        assert found is not None
        return found

    async def tried(attempts: int) -> bool:
        session = await session_of(stack, context.id)
        return session.state.is_final or (await failing()).attempts >= attempts

    await wait_for(partial(tried, 6))
    for cycle in (1, 2):
        assert (await failing()).next_attempt_at == clock.now + timedelta(minutes=30)
        clock.now += timedelta(minutes=31)
        await wait_for(partial(tried, 6 * (cycle + 1)))
        assert (await session_of(stack, context.id)).state is not SessionState.EXPIRED
    await wait_for(partial(session_in, stack, context.id, SessionState.FAULTED))
    assert (await failing()).attempts == 18
    clock.now += timedelta(hours=22)
    await asyncio.sleep(0.2)
    assert (await session_of(stack, context.id)).state is SessionState.FAULTED
    clock.now += timedelta(hours=1)  # a day since it opened: its time to live ends
    await wait_for(partial(session_in, stack, context.id, SessionState.EXPIRED))
    async with stack.store.snapshot() as uow:
        letters = await uow.dead_letters.find(DeadLetterQuery(session_id=context.id))
    assert [(d.reason, d.seq, d.attempts) for d in letters] == [(DeadLetterReason.EXPIRED, 2, 18)]


async def session_in(stack: Stack, session_id: str, state: SessionState) -> bool:
    return (await session_of(stack, session_id)).state is state


@contract(session_mode=SessionMode.REQUIRED)
class Account(Protocol):
    @operation
    async def open_account(self, deposit: int) -> None: ...

    @operation(initiating=False)
    async def deposit(self, amount: int) -> None: ...


@service(Account)
class AccountService(BaseModel):
    balance: int = 0

    async def open_account(self, deposit: int) -> None:
        if deposit < 0:
            raise ValueError("an account opens with a deposit")
        self.balance = deposit

    async def deposit(self, amount: int) -> None:
        self.balance += amount


@pytest.mark.parametrize("handling", [ReceiveErrorHandling.DROP, ReceiveErrorHandling.MOVE])
async def test_a_failed_initiating_message_still_initiated_its_session(
    stack: Stack, handling: ReceiveErrorHandling
) -> None:
    """The send that initiated the session initiated it: once the first message is dropped or
    moved aside, the messages after it apply as the client sent them."""
    poison = dataclasses.replace(FAST_POISON, receive_error_handling=handling)
    endpoint = stack.endpoint(AccountService, poison=poison)
    runtime = await stack.runtime([(endpoint, AccountService)])
    context = runtime.client.session(Account, endpoint=endpoint.name)
    account = await context.open()
    await account.open_account(-1)
    await account.deposit(5)
    await account.deposit(2)

    async def settled() -> bool:
        return (await session_of(stack, context.id)).last_applied_seq == 3

    await wait_for(settled)
    async with stack.store.snapshot() as uow:
        messages = [await uow.messages.by_seq(context.id, seq) for seq in (1, 2, 3)]
        letters = await uow.dead_letters.find(DeadLetterQuery(session_id=context.id))
    assert [m.status for m in messages if m is not None] == [
        MessageStatus.FAILED if handling is ReceiveErrorHandling.DROP else MessageStatus.DEAD,
        MessageStatus.APPLIED,
        MessageStatus.APPLIED,
    ]
    moved = [DeadLetterReason.POISON] if handling is ReceiveErrorHandling.MOVE else []
    assert [d.reason for d in letters] == moved
    assert (await session_of(stack, context.id)).instance_state == {"balance": 7}


async def test_entries_written_without_a_relay_are_published_by_polling(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    client = Client(stack.store, Endpoints([endpoint]))
    context = client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("polled")
    await journal.write(3)
    runtime = await stack.runtime([(endpoint, JournalService)])
    assert (
        await runtime.client.wait((await _message_id(stack, context.id, 2)), timeout_s=20)
        is not None
    )

    async def outbox_empty() -> bool:
        async with stack.store.snapshot() as uow:
            return (await uow.outbox.stats()).count == 0

    await wait_for(outbox_empty, 5.0)  # the relay removes what was confirmed a moment later
    async with stack.store.snapshot() as uow:
        message = await uow.messages.by_seq(context.id, 2)
    assert message is not None
    assert message.status is MessageStatus.APPLIED


async def _message_id(stack: Stack, session_id: str, seq: int) -> str:
    async with stack.store.snapshot() as uow:
        message = await uow.messages.by_seq(session_id, seq)
    assert message is not None
    return message.message_id


async def test_a_worker_that_vanishes_mid_stream_loses_nothing(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService, poison=PoisonPolicy(retry_cycle_delay_s=0.1))
    served = [(endpoint, JournalService)]
    doomed = await stack.runtime(served)
    client = Client(stack.store, Endpoints([endpoint]), doomed.relay)
    names = [f"crash-{i}" for i in range(10)]
    contexts = [client.session(Journal, endpoint=endpoint.name) for _ in names]
    journals = [await c.open() for c in contexts]
    for name, journal in zip(names, journals, strict=True):
        await journal.begin(name)
    for value in range(20):
        for journal in journals:
            await journal.write(value)
        if value == 8:
            # The worker dies mid-batch: unsettled deliveries and unpublished entries remain.
            stack.runtimes.remove(doomed)
            await doomed.abort()
            survivor = await stack.runtime(served)
            client.relay = survivor.relay
    results = await asyncio.gather(*(j.finish() for j in journals))
    assert results == [list(range(20))] * len(names)


@contract(session_mode=SessionMode.NOT_ALLOWED)
class Ledger(Protocol):
    @operation
    async def record(self, n: int) -> None: ...


RECORDED: list[int] = []
BROKEN = {"negative": True}


@service(Ledger)
class LedgerService:
    async def record(self, n: int) -> None:
        if n < 0 and BROKEN["negative"]:
            raise ValueError(f"cannot record {n}")
        RECORDED.append(n)


async def test_a_poison_datagram_faults_the_listener_of_every_worker_until_resumed(
    stack: Stack,
) -> None:
    """WCF's ReceiveErrorHandling.Fault: the listener stops at the poison message, kept."""
    RECORDED.clear()
    BROKEN["negative"] = True
    endpoint = stack.endpoint(LedgerService, poison=FAST_POISON)
    served = [(endpoint, LedgerService)]
    first = await stack.runtime(served)
    await stack.runtime(served)
    client = first.client

    async def record(n: int) -> str:
        sent = await client.send(SendRequest(endpoint, None, "record", {"n": n}))
        return sent.message.message_id

    async def resume(action: ResumeAction) -> MessageStatus | None:
        async with publish_after_commit(stack.store, first.relay, utcnow()) as tx:
            _, message = await resume_listener(tx, endpoint, action, utcnow())
        return None if message is None else message.status

    poison = await record(-1)
    await wait_for(lambda: _is(stack, poison, (MessageStatus.FAILED, MessageStatus.DEAD)))
    later = [await record(n) for n in range(1, 6)]
    await asyncio.sleep(0.5)
    assert RECORDED == []
    assert await _is(stack, poison, (MessageStatus.FAILED,))
    async with stack.store.snapshot() as uow:
        fault = await uow.listener_faults.get(endpoint.name)
    assert fault is not None
    assert (fault.message_id, fault.reason) == (poison, "ValueError: cannot record -1")

    # The service is fixed: retried, the poison message is applied, and the listener goes on.
    BROKEN["negative"] = False
    assert await resume(ResumeAction.RETRY) is MessageStatus.PENDING
    await wait_for(lambda: _all_applied(stack, [poison, *later]))
    assert sorted(RECORDED) == [-1, 1, 2, 3, 4, 5]

    # Skipped, the next poison message becomes a dead letter and the listener goes on.
    BROKEN["negative"] = True
    second = await record(-2)
    await wait_for(lambda: _faulted(stack, endpoint.name))
    assert await resume(ResumeAction.SKIP) is MessageStatus.DEAD
    after = await record(6)
    await wait_for(lambda: _all_applied(stack, [after]))
    async with stack.store.snapshot() as uow:
        letters = await uow.dead_letters.find(DeadLetterQuery(reason=DeadLetterReason.SKIPPED))
    assert [d.message_id for d in letters] == [second]
    with pytest.raises(ListenerNotFaulted, match="is not faulted"):
        await resume(ResumeAction.SKIP)


async def _is(stack: Stack, message_id: str, statuses: tuple[MessageStatus, ...]) -> bool:
    async with stack.store.snapshot() as uow:
        found = (await uow.messages.get_many([message_id])).get(message_id)
    return found is not None and found.status in statuses


async def _faulted(stack: Stack, endpoint: str) -> bool:
    async with stack.store.snapshot() as uow:
        return await uow.listener_faults.get(endpoint) is not None


async def _all_applied(stack: Stack, message_ids: list[str]) -> bool:
    async with stack.store.snapshot() as uow:
        found = await uow.messages.get_many(message_ids)
    return all(m.status is MessageStatus.APPLIED for m in found.values()) and len(found) == len(
        message_ids
    )
