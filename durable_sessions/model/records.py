"""The values the store keeps: sessions, messages, outbox entries, dead letters, sequences.

Records are frozen; a change is a new record made with :func:`dataclasses.replace`. Times are
timezone-aware UTC datetimes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from durable_sessions.model.access import Role
from durable_sessions.model.lifecycle import SessionEvent, SessionState, transition
from durable_sessions.wsrm.messages import RMVersion

JSON = Any
"""A value made of dicts, lists, strings, numbers, booleans and None."""

STALL_AFTER = timedelta(seconds=60)
"""How long a session with unapplied messages may go without progress before the sweeper
republishes its next message (a safety net for deliveries the broker lost)."""


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class _IdClock:
    """The millisecond and counter of the newest id this process made."""

    COUNTER_MAX = 0xFFF

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (0, 0)

    def tick(self, random_start: int) -> tuple[int, int]:
        """The next (millisecond, counter): later than the last one, never earlier."""
        with self._lock:
            millis = time.time_ns() // 1_000_000
            last_millis, last_counter = self._last
            if millis > last_millis:
                self._last = (millis, random_start & self.COUNTER_MAX >> 1)  # room to count
            elif last_counter < self.COUNTER_MAX:
                self._last = (last_millis, last_counter + 1)
            else:
                self._last = (last_millis + 1, 0)
            return self._last


_id_clock = _IdClock()


def new_id() -> str:
    """A UUIDv7 string: random, and ordered by creation (so ids sort like creation).

    Ids made in the same millisecond count up in the 12 bits after the version (RFC 9562,
    section 6.2, method 1), so a process's ids sort in the order it made them.
    """
    rand = int.from_bytes(os.urandom(10), "big")
    millis, counter = _id_clock.tick(rand >> 64)
    value = (millis & (1 << 48) - 1) << 80
    value |= 0x7 << 76 | counter << 64
    value |= 0b10 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


class MessageStatus(StrEnum):
    """Where a message is on its way to being applied."""

    PENDING = "pending"
    """Sent, not applied yet (including while a retry is scheduled)."""
    PARKED = "parked"
    """Arrived before an earlier message of its session; waits for the gap to fill."""
    APPLIED = "applied"
    """Applied exactly once; its result, if any, is recorded."""
    FAILED = "failed"
    """Its handler kept failing and the poison policy stopped trying."""
    DEAD = "dead"
    """Moved to the dead letters, with a reason."""

    @property
    def is_final(self) -> bool:
        """True when the message will not be applied (unless an operator acts)."""
        return self in (MessageStatus.APPLIED, MessageStatus.FAILED, MessageStatus.DEAD)


class DeadLetterReason(StrEnum):
    """Why a message became a dead letter."""

    POISON = "poison"
    """Its handler kept failing; moved aside by receive_error_handling MOVE."""
    REJECTED = "rejected"
    """Its handler kept failing; rejected by receive_error_handling REJECT."""
    NOT_INITIATING = "not_initiating"
    """The first message of a session called a non-initiating operation."""
    SESSION_NOT_OPEN = "session_not_open"
    """It reached a session that was already closed, terminated or expired."""
    TERMINATED = "terminated"
    """It was still pending when its session was terminated."""
    EXPIRED = "expired"
    """It was still pending when its session expired."""
    SKIPPED = "skipped"
    """An operator resumed its faulted session by skipping it."""
    UNDELIVERABLE = "undeliverable"
    """It could not be decoded or addressed (malformed body, unknown session or operation)."""


SESSION_SEND_FIELDS = ("last_sent_seq", "terminating_seq", "last_sent_at", "stall_check_at")
"""The fields of a session's send side, which senders lock and write apart from the rest."""


def _latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One durable session: identity, state, watermarks, counters and instance state.

    A session is kept in two parts that are locked apart, so that sending to a session never
    waits for an applier of it, nor the reverse: its *send side* (:data:`SESSION_SEND_FIELDS`),
    written by every send, and its *state*, everything else, written by appliers and by state
    changes. ``version`` counts the writes of the state.
    """

    id: str
    contract: str
    endpoint: str
    created_at: datetime
    state: SessionState = SessionState.OPEN
    labels: Mapping[str, str] = field(default_factory=dict)
    last_sent_seq: int = 0
    last_applied_seq: int = 0
    applied_count: int = 0
    parked_count: int = 0
    duplicate_count: int = 0
    dead_count: int = 0
    instance_state: JSON = None
    inactivity_timeout_s: float = 600.0
    ttl_s: float | None = None
    last_activity_at: datetime | None = None
    """When the state last changed because of the session's work (an apply, an open)."""
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    close_requested: bool = False
    terminating_seq: int | None = None
    """The seq of the terminating operation once one is sent: later sends are refused."""
    last_sent_at: datetime | None = None
    """When the last message was sent to the session."""
    progress_at: datetime | None = None
    """When the watermark last moved (or the session was resumed)."""
    stall_check_at: datetime | None = None
    """When the sweeper next checks whether the session's unapplied messages have stalled:
    set by a send when no check is due, moved on or cleared by the check."""
    fault_seq: int | None = None
    fault_reason: str | None = None
    end_reason: str | None = None
    opened_by: str | None = None
    """The id of the key that opened it (see ``Principal.id``); a sender acts only on its own."""
    token_digest: str | None = None
    """The SHA-256 of the session token handed to its opener (the token itself is not kept)."""
    version: int = 1
    expires_at: datetime | None = field(init=False)
    """When the session expires, or None once final. Its inactivity timeout (WCF's
    ``receiveTimeout``) counts only while the service waits for the client: from its last
    activity or send, while nothing it was sent is :attr:`pending`. While messages are pending
    (waiting for the service, or for a retry) and while it is faulted (waiting for an
    operator), only its time to live (WCF's ``TimeToLive``) ends it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "expires_at", self._deadline())

    def _deadline(self) -> datetime | None:
        if self.state.is_final:
            return None
        if self.state is SessionState.FAULTED or self.pending:
            return self.ends_at
        deadline = (self.last_active_at or self.created_at) + timedelta(
            seconds=self.inactivity_timeout_s
        )
        return deadline if self.ends_at is None else min(deadline, self.ends_at)

    @property
    def pending(self) -> bool:
        """True while a message sent to it is neither applied nor dead-lettered yet."""
        return self.last_applied_seq < self.last_sent_seq

    @property
    def ends_at(self) -> datetime | None:
        """When its time to live ends (None without one)."""
        return None if self.ttl_s is None else self.created_at + timedelta(seconds=self.ttl_s)

    @property
    def last_active_at(self) -> datetime | None:
        """The later of the last activity and the last send."""
        return _latest(self.last_activity_at, self.last_sent_at)

    @property
    def last_changed_at(self) -> datetime | None:
        """The later of the last state change and the last send."""
        return _latest(self.updated_at, self.last_sent_at)

    @property
    def sent_count(self) -> int:
        """Messages sent to the session (its sequence numbers start at 1)."""
        return self.last_sent_seq

    def moved(self, event: SessionEvent, now: datetime) -> SessionRecord:
        """This session after ``event``, checked against the transition table.

        Raises :class:`~durable_sessions.errors.IllegalTransition` for an event its state does
        not allow.
        """
        state = transition(self.state, event)
        return replace(
            self,
            state=state,
            updated_at=now,
            ended_at=now if state.is_final else self.ended_at,
            close_requested=self.close_requested or event is SessionEvent.CLOSE,
        )

    def drained(self, now: datetime) -> SessionRecord:
        """Closed if it is closing with nothing left to apply; else this session as it is."""
        if self.state is SessionState.CLOSING and self.last_applied_seq >= self.last_sent_seq:
            return self.moved(SessionEvent.DRAINED, now)
        return self


SESSION_STATE_FIELDS = tuple(
    f.name for f in fields(SessionRecord) if f.init and f.name not in SESSION_SEND_FIELDS
)
"""The fields of a session's state: all it is given but its send side."""


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One operation call, in a session (``session_id`` and ``seq`` set) or a datagram."""

    message_id: str
    endpoint: str
    contract: str
    operation: str
    args: Mapping[str, JSON]
    created_at: datetime
    session_id: str | None = None
    seq: int | None = None
    status: MessageStatus = MessageStatus.PENDING
    attempts: int = 0
    result: JSON = None
    error: str | None = None
    updated_at: datetime | None = None
    applied_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A message waiting to be published; removed once the broker confirms it."""

    exchange: str
    routing_key: str
    body: bytes
    created_at: datetime
    headers: Mapping[str, str | int] = field(default_factory=dict)
    message_id: str | None = None
    id: int | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A message that could not be delivered or applied, kept with its reason for replay."""

    id: str
    message_id: str
    endpoint: str
    contract: str
    operation: str
    args: Mapping[str, JSON]
    reason: DeadLetterReason
    created_at: datetime
    detail: str = ""
    session_id: str | None = None
    seq: int | None = None
    attempts: int = 0
    replayed_at: datetime | None = None
    replay_message_id: str | None = None


def dead_letter_of(
    message: MessageRecord, reason: DeadLetterReason, detail: str, now: datetime
) -> DeadLetterRecord:
    """The dead letter that keeps ``message`` with its reason, for inspection and replay."""
    return DeadLetterRecord(
        id=new_id(),
        message_id=message.message_id,
        endpoint=message.endpoint,
        contract=message.contract,
        operation=message.operation,
        args=message.args,
        reason=reason,
        created_at=now,
        detail=detail,
        session_id=message.session_id,
        seq=message.seq,
        attempts=message.attempts,
    )


@dataclass(frozen=True, slots=True)
class ListenerFault:
    """An endpoint's datagram listener stopped at a poison message (``receive_error_handling``
    ``fault``), as a WCF listener faults: nothing more is taken from its datagram queue until an
    operator resumes it, retrying or skipping the message it stopped at."""

    endpoint: str
    message_id: str
    """The datagram it stopped at, kept with status ``failed``."""
    reason: str
    faulted_at: datetime


class SequenceRole(StrEnum):
    """Which end of a WS-RM sequence this side is."""

    SOURCE = "source"
    """We send the messages (numbering, retransmitting)."""
    DESTINATION = "destination"
    """We receive the messages (acknowledging, delivering)."""


@dataclass(frozen=True, slots=True)
class SequenceRecord:
    """One WS-RM sequence, source or destination, with the engine's state as stored data.

    ``state`` is the engine's state as :func:`durable_sessions.wsrm.snapshot.dump` writes it:
    next message number, acknowledgement ranges, delivered-up-to, unacknowledged messages with
    their retry schedule, last message number, status. The other fields are kept beside it so
    queries can use them: ``pending`` (a destination sequence that has delivered nothing to its
    session yet; ``max_pending_channels`` counts in process, see
    :mod:`durable_sessions.reliable.pending`), ``ended`` (terminated or faulted),
    ``create_message_id`` (the CreateSequence that made it, to answer a repeat the same way)
    and ``wake_at`` (when the engine next has something to do, None once ended). ``version``
    is the optimistic concurrency check, as on sessions.
    """

    identifier: str
    role: SequenceRole
    rm_version: RMVersion
    endpoint: str
    state: Mapping[str, JSON]
    created_at: datetime
    session_id: str | None = None
    pending: bool = False
    ended: bool = False
    create_message_id: str | None = None
    wake_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker process as its last heartbeat described it."""

    id: str
    host: str
    pid: int
    endpoints: tuple[str, ...]
    started_at: datetime
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A named lease: which process holds it, and until when unless it renews it."""

    name: str
    holder: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored: its name, role and scope, and a digest of it, never the key."""

    name: str
    role: Role
    prefix: str
    """The key's first characters: not secret, unique, how a presented key is looked up."""
    digest: str
    """The key's SHA-256, hex."""
    created_at: datetime
    contract: str | None = None
    last_used_at: datetime | None = None
