"""The in-memory store: the SQL store's twin for tests, enforcing the same rules.

Write transactions run one at a time (as SQLite's ``BEGIN IMMEDIATE``) on copies of the tables
they touch; leaving the block publishes the copies, an error drops them. Read-only snapshots see
the last committed state.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from durable_sessions.errors import ConcurrencyConflict, StoreError, UniquenessViolation
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    SESSION_SEND_FIELDS,
    SESSION_STATE_FIELDS,
    DeadLetterRecord,
    KeyRecord,
    LeaseRecord,
    ListenerFault,
    MessageRecord,
    MessageStatus,
    OutboxRecord,
    SequenceRecord,
    SequenceRole,
    SessionRecord,
    WorkerRecord,
)
from durable_sessions.store.base import (
    DeadLetterQuery,
    DeadLetterRepository,
    KeyRepository,
    LeaseRepository,
    MessageRepository,
    NonceRepository,
    OutboxRepository,
    OutboxStats,
    SequenceRepository,
    SessionLock,
    SessionOrder,
    SessionQuery,
    SessionRepository,
    Store,
    UnitOfWork,
    check_limit,
)
from durable_sessions.store.memory_listeners import MemoryListenerFaults
from durable_sessions.store.memory_workers import MemoryWorkers

R = TypeVar("R")


@dataclasses.dataclass(slots=True)
class _Tables:
    sessions: dict[str, SessionRecord] = dataclasses.field(default_factory=dict)
    messages: dict[str, MessageRecord] = dataclasses.field(default_factory=dict)
    seqs: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)
    outbox: dict[int, OutboxRecord] = dataclasses.field(default_factory=dict)
    dead_letters: dict[str, DeadLetterRecord] = dataclasses.field(default_factory=dict)
    listener_faults: dict[str, ListenerFault] = dataclasses.field(default_factory=dict)
    sequences: dict[str, SequenceRecord] = dataclasses.field(default_factory=dict)
    leases: dict[str, LeaseRecord] = dataclasses.field(default_factory=dict)
    workers: dict[str, WorkerRecord] = dataclasses.field(default_factory=dict)
    keys: dict[str, KeyRecord] = dataclasses.field(default_factory=dict)
    nonces: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    outbox_next_id: int = 1


class _Work:
    """The tables as one transaction sees them: copied on first write, checked on every call."""

    def __init__(self, committed: _Tables, *, writable: bool) -> None:
        self.tables = dataclasses.replace(committed)
        self.writable = writable
        self.spoiled: StoreError | None = None
        self._copied: set[str] = set()
        self.sends_locked: set[str] = set()
        """Sessions whose send side this transaction has locked."""

    def check(self) -> None:
        if self.spoiled is not None:
            raise StoreError(
                f"this transaction failed earlier ({self.spoiled}); leave the block to roll back"
            )

    def table(self, name: str) -> Any:
        """A table to write to, copied on first use so a rollback leaves the original intact."""
        self.check()
        if not self.writable:
            raise StoreError("cannot write in a read-only snapshot")
        if name not in self._copied:
            setattr(self.tables, name, dict(getattr(self.tables, name)))
            self._copied.add(name)
        return getattr(self.tables, name)

    def fail(self, error: StoreError) -> StoreError:
        self.spoiled = error
        return error


def _page(
    items: list[R],
    key: Callable[[R], str],
    after: str | None,
    limit: int,
    *,
    descending: bool = False,
) -> list[R]:
    ordered = sorted(items, key=key, reverse=descending)
    if after is not None:
        ordered = [
            item for item in ordered if (key(item) < after if descending else key(item) > after)
        ]
    return ordered[: check_limit(limit)]


def _sends(session: SessionRecord) -> tuple[object, ...]:
    return tuple(getattr(session, name) for name in SESSION_SEND_FIELDS)


def _state(session: SessionRecord) -> tuple[object, ...]:
    return tuple(getattr(session, name) for name in SESSION_STATE_FIELDS)


class _Sessions(SessionRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def add_many(self, sessions: Sequence[SessionRecord]) -> None:
        table = self._w.table("sessions")
        for session in sessions:
            if session.id in table:
                raise self._w.fail(UniquenessViolation(f"session {session.id!r} already exists"))
            table[session.id] = session
            self._w.sends_locked.add(session.id)

    async def get_many(
        self, session_ids: Collection[str], *, lock: SessionLock | None = None
    ) -> dict[str, SessionRecord]:
        self._w.check()
        found = self._w.tables.sessions
        sessions = {sid: found[sid] for sid in sorted(set(session_ids)) if sid in found}
        if lock is SessionLock.SENDS or lock is SessionLock.BOTH:
            self._w.sends_locked.update(sessions)
        return sessions

    async def update(self, session: SessionRecord) -> SessionRecord:
        table = self._w.table("sessions")
        stored = table.get(session.id)
        if stored is None:
            raise self._w.fail(ConcurrencyConflict(f"no session {session.id!r} to update"))
        updated = session
        if _state(stored) != _state(session):
            if stored.version != session.version:
                raise self._w.fail(
                    ConcurrencyConflict(
                        f"session {session.id!r} changed since it was read "
                        f"(version {session.version}, stored {stored.version})"
                    )
                )
            updated = dataclasses.replace(session, version=session.version + 1)
        if _sends(stored) != _sends(session) and session.id not in self._w.sends_locked:
            raise self._w.fail(
                StoreError("a session's send side can change only under its send lock")
            )
        table[session.id] = updated
        return updated

    async def update_many(self, sessions: Sequence[SessionRecord]) -> list[SessionRecord]:
        ids = [s.id for s in sessions]
        if len(set(ids)) != len(ids):
            raise self._w.fail(ConcurrencyConflict("a session appears twice in one batch update"))
        return [await self.update(session) for session in sessions]

    async def find(self, query: SessionQuery) -> list[SessionRecord]:
        self._w.check()
        matches = [
            s
            for s in self._w.tables.sessions.values()
            if (query.state is None or s.state is query.state)
            and (query.contract is None or s.contract == query.contract)
            and (query.endpoint is None or s.endpoint == query.endpoint)
            and (query.created_after is None or s.created_at >= query.created_after)
            and (query.created_before is None or s.created_at < query.created_before)
            and all(s.labels.get(k) == v for k, v in query.labels.items())
        ]
        return _page(
            matches,
            lambda s: s.id,
            query.after_id,
            query.limit,
            descending=query.order is SessionOrder.NEWEST_FIRST,
        )

    async def expiring(self, now: datetime, limit: int) -> list[SessionRecord]:
        self._w.check()
        due = [
            s
            for s in self._w.tables.sessions.values()
            if s.expires_at is not None and s.expires_at <= now
        ]
        return sorted(due, key=lambda s: (s.expires_at or now, s.id))[: check_limit(limit)]

    async def stall_checks_due(self, now: datetime, limit: int) -> list[SessionRecord]:
        self._w.check()
        due = [
            s
            for s in self._w.tables.sessions.values()
            if s.stall_check_at is not None and s.stall_check_at <= now
        ]
        return sorted(due, key=lambda s: (s.stall_check_at or now, s.id))[: check_limit(limit)]

    async def count_by_state(self) -> dict[SessionState, int]:
        self._w.check()
        counts = dict.fromkeys(SessionState, 0)
        for s in self._w.tables.sessions.values():
            counts[s.state] += 1
        return counts


class _Messages(MessageRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def add(self, message: MessageRecord) -> None:
        messages = self._w.table("messages")
        if message.message_id in messages:
            raise self._w.fail(
                UniquenessViolation(f"message id {message.message_id!r} already exists")
            )
        if message.session_id is not None:
            if message.session_id not in self._w.tables.sessions:
                raise self._w.fail(
                    StoreError(f"message refers to missing session {message.session_id!r}")
                )
            if message.seq is not None:
                seqs = self._w.table("seqs")
                key = (message.session_id, message.seq)
                if key in seqs:
                    raise self._w.fail(
                        UniquenessViolation(
                            f"session {message.session_id!r} already has seq {message.seq}"
                        )
                    )
                seqs[key] = message.message_id
        messages[message.message_id] = message

    async def add_many(self, messages: Sequence[MessageRecord]) -> None:
        for message in messages:
            await self.add(message)

    async def get(self, message_id: str) -> MessageRecord | None:
        self._w.check()
        return self._w.tables.messages.get(message_id)

    async def get_many(
        self, message_ids: Collection[str], *, lock: bool = False
    ) -> dict[str, MessageRecord]:
        self._w.check()
        found = self._w.tables.messages
        return {mid: found[mid] for mid in message_ids if mid in found}

    async def by_seq(self, session_id: str, seq: int) -> MessageRecord | None:
        self._w.check()
        message_id = self._w.tables.seqs.get((session_id, seq))
        return None if message_id is None else self._w.tables.messages[message_id]

    async def update(self, message: MessageRecord) -> None:
        messages = self._w.table("messages")
        stored = messages.get(message.message_id)
        if stored is None:
            raise self._w.fail(StoreError(f"no message {message.message_id!r} to update"))
        if (stored.session_id, stored.seq) != (message.session_id, message.seq):
            raise self._w.fail(
                StoreError(f"message {message.message_id!r} cannot change its session or seq")
            )
        messages[message.message_id] = message

    async def update_many(self, messages: Sequence[MessageRecord]) -> None:
        ids = [m.message_id for m in messages]
        if len(set(ids)) != len(ids):
            raise self._w.fail(StoreError("a message appears twice in one batch update"))
        for message in messages:
            await self.update(message)

    async def for_session(
        self,
        session_id: str,
        *,
        statuses: Collection[MessageStatus] | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[MessageRecord]:
        self._w.check()
        wanted = None if statuses is None else set(statuses)
        found = [
            m
            for m in self._w.tables.messages.values()
            if m.session_id == session_id
            and m.seq is not None
            and m.seq > after_seq
            and (wanted is None or m.status in wanted)
        ]
        return sorted(found, key=lambda m: m.seq or 0)[: check_limit(limit)]

    async def retries_due(self, now: datetime, limit: int) -> list[MessageRecord]:
        self._w.check()
        due = [
            m
            for m in self._w.tables.messages.values()
            if m.status is MessageStatus.PENDING
            and m.next_attempt_at is not None
            and m.next_attempt_at <= now
        ]
        return sorted(due, key=lambda m: (m.next_attempt_at, m.message_id))[: check_limit(limit)]


class _Outbox(OutboxRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def add(self, entry: OutboxRecord) -> OutboxRecord:
        table = self._w.table("outbox")
        stored = dataclasses.replace(entry, id=self._w.tables.outbox_next_id)
        self._w.tables.outbox_next_id += 1
        table[stored.id] = stored
        return stored

    async def add_many(self, entries: Sequence[OutboxRecord]) -> list[OutboxRecord]:
        return [await self.add(entry) for entry in entries]

    async def claim(
        self, owner: str, now: datetime, until: datetime, limit: int
    ) -> list[OutboxRecord]:
        table = self._w.table("outbox")
        free = [e for e in table.values() if e.claimed_until is None or e.claimed_until <= now]
        claimed = [
            dataclasses.replace(e, claimed_by=owner, claimed_until=until)
            for e in sorted(free, key=lambda e: e.id)[: check_limit(limit)]
        ]
        table.update({e.id: e for e in claimed})
        return claimed

    async def remove(self, ids: Collection[int]) -> None:
        table = self._w.table("outbox")
        for entry_id in ids:
            table.pop(entry_id, None)

    async def stats(self) -> OutboxStats:
        self._w.check()
        entries = list(self._w.tables.outbox.values())
        oldest = min((e.created_at for e in entries), default=None)
        return OutboxStats(len(entries), oldest)


class _DeadLetters(DeadLetterRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def add(self, dead_letter: DeadLetterRecord) -> None:
        table = self._w.table("dead_letters")
        if dead_letter.id in table:
            raise self._w.fail(UniquenessViolation(f"dead letter {dead_letter.id!r} exists"))
        table[dead_letter.id] = dead_letter

    async def add_many(self, dead_letters: Sequence[DeadLetterRecord]) -> None:
        for dead_letter in dead_letters:
            await self.add(dead_letter)

    async def get(self, dead_letter_id: str) -> DeadLetterRecord | None:
        self._w.check()
        return self._w.tables.dead_letters.get(dead_letter_id)

    async def update(self, dead_letter: DeadLetterRecord) -> None:
        table = self._w.table("dead_letters")
        if dead_letter.id not in table:
            raise self._w.fail(StoreError(f"no dead letter {dead_letter.id!r} to update"))
        table[dead_letter.id] = dead_letter

    async def find(self, query: DeadLetterQuery) -> list[DeadLetterRecord]:
        self._w.check()
        matches = [
            d
            for d in self._w.tables.dead_letters.values()
            if (query.session_id is None or d.session_id == query.session_id)
            and (query.reason is None or d.reason is query.reason)
        ]
        return _page(matches, lambda d: d.id, query.after_id, query.limit)

    async def count_waiting(self) -> int:
        self._w.check()
        return sum(1 for d in self._w.tables.dead_letters.values() if d.replayed_at is None)


class _Sequences(SequenceRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def add(self, sequence: SequenceRecord) -> None:
        table = self._w.table("sequences")
        if sequence.identifier in table:
            raise self._w.fail(
                UniquenessViolation(f"sequence {sequence.identifier!r} already exists")
            )
        if sequence.session_id is not None and sequence.session_id not in self._w.tables.sessions:
            raise self._w.fail(
                StoreError(f"sequence {sequence.identifier!r} names no existing session")
            )
        table[sequence.identifier] = sequence

    async def get(self, identifier: str, *, lock: bool = False) -> SequenceRecord | None:
        self._w.check()
        return self._w.tables.sequences.get(identifier)

    async def update(self, sequence: SequenceRecord) -> SequenceRecord:
        table = self._w.table("sequences")
        stored = table.get(sequence.identifier)
        if stored is None or stored.version != sequence.version:
            raise self._w.fail(
                ConcurrencyConflict(
                    f"sequence {sequence.identifier!r} changed since it was read "
                    f"(version {sequence.version})"
                )
            )
        updated = dataclasses.replace(
            sequence,
            identifier=stored.identifier,
            role=stored.role,
            created_at=stored.created_at,
            version=sequence.version + 1,
        )
        table[sequence.identifier] = updated
        return updated

    async def created_by(self, endpoint: str, message_id: str) -> SequenceRecord | None:
        self._w.check()
        for sequence in self._w.tables.sequences.values():
            if sequence.endpoint == endpoint and sequence.create_message_id == message_id:
                return sequence
        return None

    async def of_session(self, session_id: str) -> list[SequenceRecord]:
        self._w.check()
        found = [s for s in self._w.tables.sequences.values() if s.session_id == session_id]
        return sorted(found, key=lambda s: (s.created_at, s.identifier))

    async def due(
        self,
        role: SequenceRole,
        now: datetime,
        limit: int,
        *,
        endpoints: Collection[str] | None = None,
    ) -> list[SequenceRecord]:
        self._w.check()
        found = [
            s
            for s in self._w.tables.sequences.values()
            if s.role is role
            and not s.ended
            and s.wake_at is not None
            and s.wake_at <= now
            and (endpoints is None or (s.session_id is not None and s.endpoint in endpoints))
        ]
        ordered = sorted(found, key=lambda s: (s.wake_at or now, s.identifier))
        return ordered[: check_limit(limit)]


class _Leases(LeaseRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def take(self, name: str, holder: str, now: datetime, until: datetime) -> LeaseRecord:
        table: dict[str, LeaseRecord] = self._w.table("leases")
        lease = table.get(name)
        if lease is None or lease.holder == holder or lease.expires_at <= now:
            lease = table[name] = LeaseRecord(name, holder, until)
        return lease

    async def release(self, name: str, holder: str) -> None:
        table = self._w.table("leases")
        lease = table.get(name)
        if lease is not None and lease.holder == holder:
            del table[name]


class _Keys(KeyRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def add(self, key: KeyRecord) -> None:
        table: dict[str, KeyRecord] = self._w.table("keys")
        if key.name in table or any(k.prefix == key.prefix for k in table.values()):
            raise self._w.fail(UniquenessViolation(f"a key named {key.name!r} already exists"))
        table[key.name] = key

    async def get(self, name: str) -> KeyRecord | None:
        self._w.check()
        return self._w.tables.keys.get(name)

    async def by_prefix(self, prefix: str) -> KeyRecord | None:
        self._w.check()
        return next((k for k in self._w.tables.keys.values() if k.prefix == prefix), None)

    async def all(self) -> list[KeyRecord]:
        self._w.check()
        return sorted(self._w.tables.keys.values(), key=lambda k: k.name)

    async def used(self, name: str, at: datetime) -> None:
        table: dict[str, KeyRecord] = self._w.table("keys")
        if name in table:
            table[name] = dataclasses.replace(table[name], last_used_at=at)

    async def remove(self, name: str) -> bool:
        return self._w.table("keys").pop(name, None) is not None


class _Nonces(NonceRepository):
    def __init__(self, work: _Work) -> None:
        self._w = work

    async def add(self, session_id: str, nonce: str, t: int) -> None:
        table: dict[tuple[str, str], int] = self._w.table("nonces")
        if (session_id, nonce) in table:
            raise self._w.fail(UniquenessViolation(f"nonce {nonce!r} was seen for {session_id!r}"))
        table[session_id, nonce] = t

    async def prune(self, session_id: str, before: int) -> int:
        table: dict[tuple[str, str], int] = self._w.table("nonces")
        old = [k for k, t in table.items() if k[0] == session_id and t < before]
        for k in old:
            del table[k]
        return len(old)


class _MemoryUnitOfWork(UnitOfWork):
    def __init__(self, work: _Work) -> None:
        self.work = work
        self.sessions = _Sessions(work)
        self.messages = _Messages(work)
        self.outbox = _Outbox(work)
        self.dead_letters = _DeadLetters(work)
        self.listener_faults = MemoryListenerFaults(work)
        self.sequences = _Sequences(work)
        self.leases = _Leases(work)
        self.workers = MemoryWorkers(work)
        self.keys = _Keys(work)
        self.nonces = _Nonces(work)


class MemoryStore(Store):
    """A store kept in memory, for tests and for trying services without a database."""

    def __init__(self) -> None:
        self._committed = _Tables()
        self._writer = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        async with self._writer:
            uow = _MemoryUnitOfWork(_Work(self._committed, writable=True))
            yield uow
            uow.work.check()
            self._committed = uow.work.tables

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[UnitOfWork]:
        yield _MemoryUnitOfWork(_Work(self._committed, writable=False))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
