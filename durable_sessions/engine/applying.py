"""Apply a batch of deliveries in one transaction: in order, exactly once, per session.

Each delivery's body was decoded once, by the dispatcher
(:meth:`~durable_sessions.engine.batches.Received.decode`). For each batch: lock the sessions
involved (in id order), read their messages, then per session in ``seq`` order drop duplicates
(``seq <= last_applied_seq`` or an already settled message), apply the next expected message and
every parked one that follows it, park early arrivals, and finally write instance state,
results, dead letters, outgoing messages and watermarks — all in the caller's
:class:`~durable_sessions.engine.outbox.OutboxTransaction`. The caller commits, and only then
settles the deliveries.

Session chains run concurrently (a session's own messages one at a time), and so do datagrams;
the worker's :class:`~durable_sessions.engine.instancing.InstanceContexts` gives each call its
instance, serialises the calls on a ``Concurrency.SINGLE`` singleton and holds the throttles.
Under ``receive_error_handling`` ``fault`` a datagram that exhausts its retries faults the
endpoint's datagram listener, kept as ``failed``; every datagram of a batch that finds the
listener faulted, and any other that exhausts its retries meanwhile, is held back unsettled
(:attr:`Settlement.HOLD`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from durable_sessions.broker.base import Delivery
from durable_sessions.engine.attempts import Attempt, Verdict, run_cycle
from durable_sessions.engine.batches import BatchOutcome, Received, Settlement
from durable_sessions.engine.instancing import InstanceContexts
from durable_sessions.engine.outbox import Claim, OutboxTransaction, outbox_entry
from durable_sessions.model.endpoints import Endpoint, ReceiveErrorHandling
from durable_sessions.model.lifecycle import SessionEvent, SessionState
from durable_sessions.model.records import (
    DeadLetterReason,
    DeadLetterRecord,
    ListenerFault,
    MessageRecord,
    MessageStatus,
    OutboxRecord,
    SessionRecord,
    dead_letter_of,
    new_id,
)
from durable_sessions.model.services import Instancing, ServiceSpec
from durable_sessions.model.topology import POISON_KEY
from durable_sessions.model.wire import WireMessage
from durable_sessions.store.base import SessionLock, UnitOfWork

PARKED_PRELOAD = 1000


@dataclass(slots=True)
class _Item:
    index: int
    delivery: Delivery
    wire: WireMessage


@dataclass(slots=True)
class _Writes:
    """Everything a batch changes, written after the handlers ran."""

    claim: Claim | None = None
    """The claim outbox entries are written with."""
    messages: dict[str, tuple[MessageRecord, bool]] = field(default_factory=dict)
    """Final message rows by id, with True for rows to insert."""
    sessions: list[SessionRecord] = field(default_factory=list)
    dead_letters: list[DeadLetterRecord] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    """Entries to publish: poison messages moved aside."""
    listener_fault: ListenerFault | None = None
    """The fault of the endpoint's datagram listener: found when the batch began, or made by it."""
    new_listener_fault: bool = False

    def holds_datagrams(self) -> bool:
        """Whether datagrams wait, unsettled, for the faulted listener to be resumed."""
        return self.listener_fault is not None

    def put(self, message: MessageRecord, *, new: bool) -> None:
        was_new = self.messages.get(message.message_id, (message, new))[1]
        self.messages[message.message_id] = (message, was_new)


class Applier:
    """Applies batches of one endpoint's deliveries with its service."""

    def __init__(
        self,
        endpoint: Endpoint,
        service: ServiceSpec,
        *,
        contexts: InstanceContexts | None = None,
        max_redeliveries: int = 10,
    ) -> None:
        self.endpoint = endpoint
        self.service = service
        self.contexts = contexts or InstanceContexts()
        self._max_redeliveries = max_redeliveries
        self._faults = endpoint.poison.receive_error_handling is ReceiveErrorHandling.FAULT

    async def apply(
        self, tx: OutboxTransaction, batch: Sequence[Received], now: datetime
    ) -> BatchOutcome:
        """Apply ``batch`` in ``tx``; see the module docstring."""
        uow = tx.uow
        outcome, writes = BatchOutcome(), _Writes(claim=tx.claim)
        items = self._addressed(batch, outcome, writes, now)
        by_session: dict[str, list[_Item]] = {}
        datagrams: list[_Item] = []
        for item in items:
            if item.wire.session_id is None:
                datagrams.append(item)
            else:
                by_session.setdefault(item.wire.session_id, []).append(item)
        # Messages are read once their sessions are locked: read before, a row could be stale
        # by the time the lock is held, changed by the batch that held it (parked, applied).
        sessions = await uow.sessions.get_many(by_session, lock=SessionLock.STATE)
        rows = await uow.messages.get_many([i.wire.message_id for i in items if i.wire.session_id])
        # A datagram has no session row to serialise its appliers: its own row is locked, so
        # a copy delivered to another worker at the same time waits, then finds it settled.
        rows.update(await uow.messages.get_many([i.wire.message_id for i in datagrams], lock=True))
        if datagrams and self._faults:
            writes.listener_fault = await uow.listener_faults.get(self.endpoint.name)
        for item in items:
            wire = item.wire
            if wire.message_id not in rows and wire.session_id is not None and wire.seq:
                taken = await uow.messages.by_seq(wire.session_id, wire.seq)
                if taken is not None:
                    rows[wire.message_id] = taken
        chains: list[Awaitable[None]] = []
        for session_id, group in by_session.items():
            session = sessions.get(session_id)
            if session is None:
                for item in group:
                    self._undeliverable(item, f"no session {session_id!r}", outcome, writes, now)
                continue
            parked = await self._preload_parked(uow, session)
            chain = _SessionChain(self, session, group, rows, parked, outcome, writes, now)
            chains.append(chain.run())
        chains.extend(self._datagram_runs(datagrams, rows, outcome, writes, now))
        await asyncio.gather(*chains)
        await self._write(tx, writes)
        return outcome

    def _addressed(
        self,
        batch: Sequence[Received],
        outcome: BatchOutcome,
        writes: _Writes,
        now: datetime,
    ) -> list[_Item]:
        """The well-formed messages of the batch addressed to this endpoint; dead letters for
        the others."""
        items: list[_Item] = []
        for index, received in enumerate(batch):
            delivery, wire = received.delivery, received.wire
            if wire is None:
                body = delivery.body[:4096]
                raw = MessageRecord(
                    message_id=delivery.message_id or new_id(),
                    endpoint=self.endpoint.name,
                    contract=self.endpoint.contract.name,
                    operation="",
                    args={"body_base64": base64.b64encode(body).decode()},
                    created_at=now,
                )
                writes.dead_letters.append(
                    dead_letter_of(raw, DeadLetterReason.UNDELIVERABLE, str(received.error), now)
                )
                outcome.dead += 1
                continue
            item = _Item(index, delivery, wire)
            if wire.endpoint != self.endpoint.name or wire.contract != self.endpoint.contract.name:
                self._undeliverable(
                    item,
                    f"addressed to {wire.contract} on endpoint {wire.endpoint!r}, which this "
                    f"endpoint ({self.endpoint.contract.name} on {self.endpoint.name!r}) is not",
                    outcome,
                    writes,
                    now,
                )
                continue
            items.append(item)
        return items

    def _undeliverable(
        self, item: _Item, detail: str, outcome: BatchOutcome, writes: _Writes, now: datetime
    ) -> None:
        message = _from_wire(item.wire, now)
        writes.dead_letters.append(
            dead_letter_of(message, DeadLetterReason.UNDELIVERABLE, detail, now)
        )
        outcome.dead += 1

    async def _preload_parked(self, uow: UnitOfWork, session: SessionRecord) -> list[MessageRecord]:
        if session.parked_count <= 0:
            return []
        return await uow.messages.for_session(
            session.id,
            statuses=[MessageStatus.PARKED],
            after_seq=session.last_applied_seq,
            limit=PARKED_PRELOAD,
        )

    def _datagram_runs(
        self,
        items: list[_Item],
        rows: dict[str, MessageRecord],
        outcome: BatchOutcome,
        writes: _Writes,
        now: datetime,
    ) -> list[Awaitable[None]]:
        unique: dict[str, _Item] = {}
        for item in items:
            if item.wire.message_id in unique:
                outcome.duplicates += 1
            else:
                unique[item.wire.message_id] = item
        return [
            self._datagram(item, rows.get(item.wire.message_id), outcome, writes, now)
            for item in unique.values()
        ]

    async def _datagram(
        self,
        item: _Item,
        row: MessageRecord | None,
        outcome: BatchOutcome,
        writes: _Writes,
        now: datetime,
    ) -> None:
        if writes.holds_datagrams():
            outcome.settlements[item.index] = Settlement.HOLD
            outcome.listener_faulted = True
            return
        new = row is None
        message = row or _from_wire(item.wire, now)
        if message.session_id is not None:
            self._undeliverable(
                item, "a session message delivered as a datagram", outcome, writes, now
            )
            return
        if message.status.is_final:
            outcome.duplicates += 1
            return
        if message.next_attempt_at is not None and message.next_attempt_at > now:
            return
        attempt = await self.attempt(message, item.delivery, now)
        verdict, message = attempt.verdict, attempt.message
        if verdict in (Verdict.APPLIED, Verdict.ENDED):
            outcome.applied += 1
            outcome.latencies.append((now - message.created_at).total_seconds())
        elif verdict is Verdict.EXHAUSTED or verdict is Verdict.REJECTED:
            if verdict is Verdict.EXHAUSTED and writes.holds_datagrams():
                # Another datagram of this batch faulted the listener while this one ran.
                outcome.settlements[item.index] = Settlement.HOLD
                return
            message = self.give_up(message, verdict, item, outcome, writes, now)
            if message.status is MessageStatus.FAILED and self._faults:
                writes.listener_fault = ListenerFault(
                    self.endpoint.name, message.message_id, message.error or "failed", now
                )
                writes.new_listener_fault = True
                outcome.listener_faulted = True
        writes.put(message, new=new)

    async def attempt(
        self,
        message: MessageRecord,
        delivery: Delivery | None,
        now: datetime,
        session_state: Mapping[str, Any] | None = None,
        *,
        in_session: bool = False,
    ) -> Attempt:
        """Run one attempt cycle of ``message``; invalid calls are rejected without a call.

        In a session, a PER_SESSION instance is restored from ``session_state``.
        """
        op = self.endpoint.contract.operations.get(message.operation)
        if op is None:
            return Attempt(
                Verdict.REJECTED,
                dataclasses.replace(message, error=f"unknown operation {message.operation!r}"),
            )
        try:
            op.load_args(message.args)
        except ValueError as e:
            return Attempt(
                Verdict.REJECTED, dataclasses.replace(message, error=f"invalid arguments: {e}")
            )
        async with self.contexts.call(
            self.service, session_state, in_session=in_session
        ) as fresh_instance:
            return await run_cycle(
                self.service,
                op,
                message,
                fresh_instance,
                self.endpoint.poison,
                now,
                redeliveries=delivery.delivery_count if delivery else 0,
                max_redeliveries=self._max_redeliveries,
            )

    def give_up(
        self,
        message: MessageRecord,
        verdict: Verdict,
        item: _Item | None,
        outcome: BatchOutcome,
        writes: _Writes,
        now: datetime,
    ) -> MessageRecord:
        """Settle a rejected or exhausted message by the poison policy (FAULT is the caller's).

        Returns the message as stored; FAILED means dropped, or (under FAULT) kept where its
        session or its datagram listener faulted.
        """
        handling = self.endpoint.poison.receive_error_handling
        detail = message.error or "failed"
        if verdict is Verdict.REJECTED:
            reason = DeadLetterReason.REJECTED
        elif handling is ReceiveErrorHandling.DROP:
            outcome.failed += 1
            return dataclasses.replace(message, status=MessageStatus.FAILED, updated_at=now)
        elif handling is ReceiveErrorHandling.REJECT:
            reason = DeadLetterReason.REJECTED
            if item is not None:
                outcome.settlements[item.index] = Settlement.REJECT
        elif handling is ReceiveErrorHandling.FAULT:
            outcome.failed += 1
            return dataclasses.replace(message, status=MessageStatus.FAILED, updated_at=now)
        else:
            reason = DeadLetterReason.POISON
            if handling is ReceiveErrorHandling.MOVE:
                writes.outbox.append(self._poison_entry(message, writes, now))
        dead = dataclasses.replace(message, status=MessageStatus.DEAD, updated_at=now)
        writes.dead_letters.append(dead_letter_of(dead, reason, detail, now))
        outcome.dead += 1
        return dead

    def _poison_entry(self, message: MessageRecord, writes: _Writes, now: datetime) -> OutboxRecord:
        entry = outbox_entry(self.endpoint, message, now, writes.claim)
        return dataclasses.replace(entry, routing_key=POISON_KEY)

    async def _write(self, tx: OutboxTransaction, writes: _Writes) -> None:
        uow, rows = tx.uow, writes.messages.values()
        await uow.messages.add_many([message for message, new in rows if new])
        await uow.messages.update_many([message for message, new in rows if not new])
        await uow.sessions.update_many(writes.sessions)
        await uow.dead_letters.add_many(writes.dead_letters)
        if writes.new_listener_fault and writes.listener_fault is not None:
            await uow.listener_faults.add(writes.listener_fault)
        await tx.publish(writes.outbox)


def _from_wire(wire: WireMessage, now: datetime) -> MessageRecord:
    return MessageRecord(
        message_id=wire.message_id,
        endpoint=wire.endpoint,
        contract=wire.contract,
        operation=wire.operation,
        args=dict(wire.args),
        created_at=now,
        session_id=wire.session_id,
        seq=wire.seq,
        updated_at=now,
    )


class _SessionChain:
    """One session's part of a batch: classify, apply in order, park the rest."""

    def __init__(
        self,
        applier: Applier,
        session: SessionRecord,
        items: list[_Item],
        rows: dict[str, MessageRecord],
        parked: list[MessageRecord],
        outcome: BatchOutcome,
        writes: _Writes,
        now: datetime,
    ) -> None:
        self.applier, self.session, self.items, self.rows = applier, session, items, rows
        self.parked, self.outcome, self.writes, self.now = parked, outcome, writes, now
        self.ready: dict[int, tuple[MessageRecord, bool, _Item | None]] = {}
        self.instance_state = session.instance_state

    async def run(self) -> None:
        for item in sorted(self.items, key=lambda i: i.wire.seq or 0):
            self._classify(item)
        for row in self.parked:
            self.ready.setdefault(row.seq or 0, (row, False, None))
        if self.session.state.applies_messages:
            async with self.applier.contexts.session(self.applier.service):
                await self._drain()
        self._settle_leftovers()
        if self.session.state is SessionState.CLOSING:
            self.session = self.session.drained(self.now)
        self.writes.sessions.append(self.session)

    def _classify(self, item: _Item) -> None:
        wire, session = item.wire, self.session
        row = self.rows.get(wire.message_id)
        new = row is None
        message = row or _from_wire(wire, self.now)
        if (
            message.message_id != wire.message_id
            or message.session_id != session.id
            or message.seq != wire.seq
        ):
            self.applier._undeliverable(
                item,
                "message id already used by another message",
                self.outcome,
                self.writes,
                self.now,
            )
            return
        seq = message.seq or 0
        if message.status.is_final or seq <= session.last_applied_seq or seq in self.ready:
            self.outcome.duplicates += 1
            self._count(duplicate_count=1)
            return
        if session.state.is_final:
            self._dead(
                message, new, DeadLetterReason.SESSION_NOT_OPEN, f"session is {session.state}"
            )
            return
        if message.next_attempt_at is not None and message.next_attempt_at > self.now:
            return  # a retry is scheduled: this delivery is early
        self.ready[seq] = (message, new, item)

    async def _drain(self) -> None:
        while (entry := self.ready.pop(self.session.last_applied_seq + 1, None)) is not None:
            message, new, item = entry
            if message.status is MessageStatus.PARKED:
                self._count(parked_count=-1)
            if not await self._apply(message, new, item):
                return
            if self.session.state is SessionState.CLOSED:
                return

    async def _apply(self, message: MessageRecord, new: bool, item: _Item | None) -> bool:
        """Apply the next message; False when the session must stop here for now."""
        applier, now = self.applier, self.now
        op = applier.endpoint.contract.operations.get(message.operation)
        # The first message sent initiates the session, as its send decided: one that failed
        # and was dropped or moved aside does not make the next one the first.
        if message.seq == 1 and op is not None and not op.initiating:
            self._dead(
                message,
                new,
                DeadLetterReason.NOT_INITIATING,
                f"the first message of a session must be initiating, and {op.name!r} is not",
            )
            self._advance(message.seq)
            return True
        attempt = await applier.attempt(
            message, item.delivery if item else None, now, self.instance_state, in_session=True
        )
        verdict, message = attempt.verdict, attempt.message
        if verdict in (Verdict.APPLIED, Verdict.ENDED):
            if applier.service.instancing is Instancing.PER_SESSION:
                self.instance_state = applier.service.snapshot(attempt.instance)
            self.writes.put(message, new=new)
            self.outcome.applied += 1
            self.outcome.latencies.append((now - message.created_at).total_seconds())
            self._advance(
                message.seq,
                applied_count=self.session.applied_count + 1,
                instance_state=self.instance_state,
            )
            if verdict is Verdict.ENDED or (op is not None and op.terminating):
                self.session = self.session.moved(SessionEvent.END, now)
            return True
        if verdict is Verdict.WAITING:
            self.writes.put(message, new=new)
            return False
        message = applier.give_up(message, verdict, item, self.outcome, self.writes, now)
        self.writes.put(message, new=new)
        if message.status is MessageStatus.DEAD:
            self._count(dead_count=1)
        handling = applier.endpoint.poison.receive_error_handling
        if (
            message.status is MessageStatus.FAILED
            and handling is ReceiveErrorHandling.FAULT
            and verdict is Verdict.EXHAUSTED
        ):
            faulted = self.session.moved(SessionEvent.FAULT, now)
            self.session = dataclasses.replace(
                faulted, fault_seq=message.seq, fault_reason=message.error
            )
            return False
        self._advance(message.seq)
        return True

    def _count(self, **deltas: int) -> None:
        """Add ``deltas`` to the session's counters (none goes below zero)."""
        counts = {name: max(0, getattr(self.session, name) + d) for name, d in deltas.items()}
        self.session = dataclasses.replace(self.session, **counts)

    def _advance(self, seq: int | None, **changes: Any) -> None:
        """Move the watermark to ``seq``, with ``changes`` to the session made by that message."""
        self.session = dataclasses.replace(
            self.session,
            last_applied_seq=seq or self.session.last_applied_seq,
            last_activity_at=self.now,
            progress_at=self.now,
            updated_at=self.now,
            **changes,
        )

    def _dead(
        self, message: MessageRecord, new: bool, reason: DeadLetterReason, detail: str
    ) -> None:
        if message.status is MessageStatus.PARKED:
            self._count(parked_count=-1)
        dead = dataclasses.replace(
            message, status=MessageStatus.DEAD, error=detail, updated_at=self.now
        )
        self.writes.put(dead, new=new)
        self.writes.dead_letters.append(dead_letter_of(dead, reason, detail, self.now))
        self.outcome.dead += 1
        self._count(dead_count=1)

    def _settle_leftovers(self) -> None:
        ended = self.session.state is SessionState.CLOSED
        for message, new, _item in self.ready.values():
            if ended:
                self._dead(
                    message,
                    new,
                    DeadLetterReason.SESSION_NOT_OPEN,
                    "sent after the session's terminating operation",
                )
            elif message.status is not MessageStatus.PARKED:
                parked = dataclasses.replace(
                    message, status=MessageStatus.PARKED, updated_at=self.now
                )
                self.writes.put(parked, new=new)
                self.outcome.parked += 1
                self._count(parked_count=1)
