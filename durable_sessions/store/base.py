"""The store interface: repositories inside a unit of work, one per transaction.

Two implementations enforce the same rules (one behaviour suite runs against both):
:class:`~durable_sessions.store.memory.MemoryStore` for tests and the SQL store in
:mod:`durable_sessions.store.sql` for SQLite and PostgreSQL. The rules:

- ``store.transaction()`` yields a :class:`UnitOfWork`; leaving the block commits, an exception
  rolls everything back.
- A session's two parts (see :class:`~durable_sessions.model.records.SessionRecord`) are locked
  apart, for the rest of the transaction (:class:`SessionLock`): senders lock the send side,
  appliers the state, and a state change that must stop senders locks both, the send side
  first. What a lock guards is read after the lock is held, so it is the latest committed.
- A duplicate unique key (session id, message id, ``(session_id, seq)``, dead-letter id,
  sequence identifier, a listener fault's endpoint) raises
  :class:`~durable_sessions.errors.UniquenessViolation`.
- ``sessions.update`` writes what changed. A changed state is written only if the stored
  version equals the record's version, and the record comes back with the next version
  (otherwise :class:`~durable_sessions.errors.ConcurrencyConflict`); a changed send side is
  written only under this transaction's send lock (otherwise
  :class:`~durable_sessions.errors.StoreError`) and leaves the version as it is.
  ``sequences.update`` succeeds only if the stored version equals the record's version.
- ``leases.take`` gives a lease to the taker only if it is free, the taker's, or run out; the
  lease returned is the one that then stands.
- ``keys.add`` of a name or prefix already stored raises
  :class:`~durable_sessions.errors.UniquenessViolation`; ``keys.remove`` says whether it removed.
- ``nonces.add`` of a nonce already seen for the session raises
  :class:`~durable_sessions.errors.UniquenessViolation`, so of two concurrent replays one wins.
- After a store error the unit of work is spoiled: every further call and the commit raise
  :class:`~durable_sessions.errors.StoreError`, and the block must be left.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

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
    SequenceRecord,
    SequenceRole,
    SessionRecord,
    WorkerRecord,
)

MAX_PAGE = 1000
"""The largest page any list query returns."""


class SessionLock(StrEnum):
    """Which parts of a session a transaction locks when it reads it."""

    STATE = "state"
    """The state: what appliers and state changes hold. The send side is read unlocked."""
    SENDS = "sends"
    """The send side: what senders hold. The state is read unlocked."""
    BOTH = "both"
    """Both, the send side first: what a state change that stops sending holds."""


class SessionOrder(StrEnum):
    """The order sessions are listed in: by id, which is creation order."""

    OLDEST_FIRST = "oldest"
    NEWEST_FIRST = "newest"


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Filters and keyset position for listing sessions, ordered by id (creation order).

    ``after_id`` is the last id of the previous page: the page goes on past it in ``order``.
    """

    state: SessionState | None = None
    contract: str | None = None
    endpoint: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    """Only sessions created at or after this time."""
    created_before: datetime | None = None
    """Only sessions created before this time."""
    after_id: str | None = None
    limit: int = 50
    order: SessionOrder = SessionOrder.OLDEST_FIRST


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Filters and keyset position for listing dead letters, ordered by id."""

    session_id: str | None = None
    reason: DeadLetterReason | None = None
    after_id: str | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """How far the outbox relay is behind."""

    count: int
    oldest_created_at: datetime | None


class SessionRepository(ABC):
    """Sessions, keyed by id."""

    async def add(self, session: SessionRecord) -> None:
        """Insert a new session."""
        await self.add_many([session])

    @abstractmethod
    async def add_many(self, sessions: Sequence[SessionRecord]) -> None:
        """Insert several new sessions."""

    async def get(
        self, session_id: str, *, lock: SessionLock | None = None
    ) -> SessionRecord | None:
        """The session, or None; ``lock`` holds those parts of it until the transaction ends."""
        found = await self.get_many([session_id], lock=lock)
        return found.get(session_id)

    @abstractmethod
    async def get_many(
        self, session_ids: Collection[str], *, lock: SessionLock | None = None
    ) -> dict[str, SessionRecord]:
        """The sessions that exist among ``session_ids``, locked in id order if asked."""

    @abstractmethod
    async def update(self, session: SessionRecord) -> SessionRecord:
        """Write what changed in ``session`` by the rules of the module docstring.

        Returns the session as stored, with the next version if its state was written.
        """

    @abstractmethod
    async def update_many(self, sessions: Sequence[SessionRecord]) -> list[SessionRecord]:
        """:meth:`update` for several sessions at once (all or none)."""

    @abstractmethod
    async def find(self, query: SessionQuery) -> list[SessionRecord]:
        """Sessions matching ``query``, in its order, at most ``query.limit``."""

    @abstractmethod
    async def expiring(self, now: datetime, limit: int) -> list[SessionRecord]:
        """Sessions not in a final state whose ``expires_at`` is at or before ``now``, the most
        overdue first (a session with pending messages is due only when its time to live
        ends)."""

    @abstractmethod
    async def stall_checks_due(self, now: datetime, limit: int) -> list[SessionRecord]:
        """Sessions whose ``stall_check_at`` is at or before ``now``, the most overdue first."""

    @abstractmethod
    async def count_by_state(self) -> dict[SessionState, int]:
        """How many sessions are in each state."""


class MessageRepository(ABC):
    """Messages (the inbox), keyed by message id and by ``(session_id, seq)``."""

    @abstractmethod
    async def add(self, message: MessageRecord) -> None:
        """Insert a new message."""

    @abstractmethod
    async def add_many(self, messages: Sequence[MessageRecord]) -> None:
        """Insert several new messages."""

    @abstractmethod
    async def get(self, message_id: str) -> MessageRecord | None:
        """The message with this id, or None."""

    @abstractmethod
    async def get_many(
        self, message_ids: Collection[str], *, lock: bool = False
    ) -> dict[str, MessageRecord]:
        """The messages that exist among ``message_ids``; ``lock`` holds their rows (id order)."""

    @abstractmethod
    async def by_seq(self, session_id: str, seq: int) -> MessageRecord | None:
        """The message of a session with this sequence number, or None."""

    @abstractmethod
    async def update(self, message: MessageRecord) -> None:
        """Overwrite an existing message (its session row must be locked by the caller)."""

    @abstractmethod
    async def update_many(self, messages: Sequence[MessageRecord]) -> None:
        """:meth:`update` for several messages at once."""

    @abstractmethod
    async def for_session(
        self,
        session_id: str,
        *,
        statuses: Collection[MessageStatus] | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[MessageRecord]:
        """A session's messages with ``seq > after_seq``, in seq order, optionally by status."""

    @abstractmethod
    async def retries_due(self, now: datetime, limit: int) -> list[MessageRecord]:
        """Pending messages whose scheduled retry time is at or before ``now``."""


class OutboxRepository(ABC):
    """Messages waiting to be published, oldest first."""

    @abstractmethod
    async def add(self, entry: OutboxRecord) -> OutboxRecord:
        """Insert an entry; return it with its id."""

    @abstractmethod
    async def add_many(self, entries: Sequence[OutboxRecord]) -> list[OutboxRecord]:
        """Insert several entries; return them with their ids, in the same order."""

    @abstractmethod
    async def claim(
        self, owner: str, now: datetime, until: datetime, limit: int
    ) -> list[OutboxRecord]:
        """Claim up to ``limit`` entries nobody holds (or whose claim ended) until ``until``."""

    @abstractmethod
    async def remove(self, ids: Collection[int]) -> None:
        """Delete published entries."""

    @abstractmethod
    async def stats(self) -> OutboxStats:
        """Count and age of the entries still waiting."""


class DeadLetterRepository(ABC):
    """Dead letters, keyed by id."""

    @abstractmethod
    async def add(self, dead_letter: DeadLetterRecord) -> None:
        """Insert a new dead letter."""

    @abstractmethod
    async def add_many(self, dead_letters: Sequence[DeadLetterRecord]) -> None:
        """Insert several new dead letters."""

    @abstractmethod
    async def get(self, dead_letter_id: str) -> DeadLetterRecord | None:
        """The dead letter, or None."""

    @abstractmethod
    async def update(self, dead_letter: DeadLetterRecord) -> None:
        """Overwrite an existing dead letter (to record a replay)."""

    @abstractmethod
    async def find(self, query: DeadLetterQuery) -> list[DeadLetterRecord]:
        """Dead letters matching ``query``, in id order, at most ``query.limit``."""

    @abstractmethod
    async def count_waiting(self) -> int:
        """How many dead letters are not replayed yet."""


class ListenerFaultRepository(ABC):
    """Faulted datagram listeners: at most one fault per endpoint."""

    @abstractmethod
    async def add(self, fault: ListenerFault) -> None:
        """Record a fault; a second fault of the same endpoint is a uniqueness violation."""

    @abstractmethod
    async def get(self, endpoint: str, *, lock: bool = False) -> ListenerFault | None:
        """The endpoint's fault (locked until the transaction ends), or None."""

    @abstractmethod
    async def remove(self, endpoint: str) -> None:
        """Clear the endpoint's fault; a store error if it has none."""

    @abstractmethod
    async def all(self) -> list[ListenerFault]:
        """Every fault, by endpoint name."""


class SequenceRepository(ABC):
    """WS-RM sequences (source and destination), keyed by identifier."""

    @abstractmethod
    async def add(self, sequence: SequenceRecord) -> None:
        """Insert a new sequence."""

    @abstractmethod
    async def get(self, identifier: str, *, lock: bool = False) -> SequenceRecord | None:
        """The sequence, or None; ``lock`` holds its row until the transaction ends."""

    @abstractmethod
    async def update(self, sequence: SequenceRecord) -> SequenceRecord:
        """Write ``sequence`` if its version is current; return it with the next version."""

    @abstractmethod
    async def created_by(self, endpoint: str, message_id: str) -> SequenceRecord | None:
        """The destination sequence of ``endpoint`` that CreateSequence ``message_id`` made."""

    @abstractmethod
    async def of_session(self, session_id: str) -> list[SequenceRecord]:
        """The sequences that carry ``session_id``, oldest first."""

    @abstractmethod
    async def due(
        self,
        role: SequenceRole,
        now: datetime,
        limit: int,
        *,
        endpoints: Collection[str] | None = None,
    ) -> list[SequenceRecord]:
        """Sequences of ``role`` not ended whose ``wake_at`` is at or before ``now``.

        With ``endpoints``, only the sequences of sessions on those endpoints: a host's, not the
        ones a client keeps in the same table.
        """


class LeaseRepository(ABC):
    """Named leases, each held by one process at a time until it expires."""

    @abstractmethod
    async def take(self, name: str, holder: str, now: datetime, until: datetime) -> LeaseRecord:
        """Take or renew lease ``name`` for ``holder`` until ``until``, unless another holder's
        lease is still running at ``now``; return the lease as it then stands (row locked)."""

    @abstractmethod
    async def release(self, name: str, holder: str) -> None:
        """End lease ``name`` if ``holder`` holds it."""


class WorkerRepository(ABC):
    """Workers' heartbeats, one row per worker process."""

    @abstractmethod
    async def beat(self, worker: WorkerRecord) -> None:
        """Record ``worker`` as seen at ``worker.seen_at`` (inserting or replacing its row)."""

    @abstractmethod
    async def seen_since(self, since: datetime) -> list[WorkerRecord]:
        """The workers seen at or after ``since``, by id."""

    @abstractmethod
    async def forget(self, worker_id: str) -> None:
        """Remove a worker's row (a worker that stops cleanly)."""

    @abstractmethod
    async def forget_before(self, before: datetime) -> None:
        """Remove the rows of workers last seen before ``before``."""


class KeyRepository(ABC):
    """API keys (their digests), keyed by name and by prefix."""

    @abstractmethod
    async def add(self, key: KeyRecord) -> None:
        """Insert a new key."""

    @abstractmethod
    async def get(self, name: str) -> KeyRecord | None:
        """The key of this name, or None."""

    @abstractmethod
    async def by_prefix(self, prefix: str) -> KeyRecord | None:
        """The key with this prefix, or None."""

    @abstractmethod
    async def all(self) -> list[KeyRecord]:
        """Every key, by name."""

    @abstractmethod
    async def used(self, name: str, at: datetime) -> None:
        """Record that key ``name`` was last used ``at`` (nothing if it is gone)."""

    @abstractmethod
    async def remove(self, name: str) -> bool:
        """Delete key ``name``; False if there was none."""


class NonceRepository(ABC):
    """The nonces of signed messages seen per session, with their time (unix seconds)."""

    @abstractmethod
    async def add(self, session_id: str, nonce: str, t: int) -> None:
        """Record ``nonce``; one already seen for the session raises UniquenessViolation."""

    @abstractmethod
    async def prune(self, session_id: str, before: int) -> int:
        """Forget the session's nonces whose time is before ``before``; return how many."""


class UnitOfWork(ABC):
    """The repositories of one transaction."""

    sessions: SessionRepository
    messages: MessageRepository
    outbox: OutboxRepository
    dead_letters: DeadLetterRepository
    listener_faults: ListenerFaultRepository
    sequences: SequenceRepository
    leases: LeaseRepository
    workers: WorkerRepository
    keys: KeyRepository
    nonces: NonceRepository


class Store(ABC):
    """Where sessions, messages, outbox and dead letters live."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A read-write transaction: commits when the block ends, rolls back on error."""

    @abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A read-only transaction; writing in it raises."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~durable_sessions.errors.StoreUnavailable` unless the store answers."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


def check_limit(limit: int) -> int:
    """``limit`` if it is a sensible page size, else a :class:`ValueError`."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    return limit


__all__ = [
    "MAX_PAGE",
    "DeadLetterQuery",
    "DeadLetterRepository",
    "KeyRepository",
    "ListenerFaultRepository",
    "LeaseRepository",
    "MessageRepository",
    "NonceRepository",
    "OutboxRepository",
    "OutboxStats",
    "SequenceRepository",
    "SessionLock",
    "SessionOrder",
    "SessionQuery",
    "SessionRepository",
    "Store",
    "UnitOfWork",
    "WorkerRepository",
    "check_limit",
]
