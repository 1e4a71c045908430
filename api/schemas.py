"""Request and response bodies of REST v1, with their limits."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from durable_sessions.engine.control import ResumeAction
from durable_sessions.engine.replay import MAX_REPLAY, Replayed, ReplayInto
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    DeadLetterReason,
    DeadLetterRecord,
    ListenerFault,
    MessageRecord,
    MessageStatus,
    SessionRecord,
)

Name = Annotated[str, Field(min_length=1, max_length=200)]
Labels = Annotated[
    dict[Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=200)]],
    Field(max_length=20),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenSession(_Strict):
    """``POST /v1/sessions``."""

    contract: Name
    endpoint: Name | None = None
    inactivity_timeout_s: float | None = Field(None, gt=0, le=31_536_000)
    ttl_s: float | None = Field(None, gt=0, le=31_536_000)
    labels: Labels = Field(default_factory=dict)


class SendMessage(_Strict):
    """``POST /v1/sessions/{id}/messages`` and ``POST /v1/datagrams``."""

    operation: Name
    args: dict[str, Any] = Field(default_factory=dict)
    message_id: Name | None = None


class SendDatagram(SendMessage):
    """``POST /v1/datagrams``: a message outside any session."""

    contract: Name
    endpoint: Name | None = None


class Terminate(_Strict):
    """``POST /v1/sessions/{id}/terminate``."""

    reason: Annotated[str, Field(min_length=1, max_length=1000)] = "terminated by an operator"


class Resume(_Strict):
    """``POST /v1/sessions/{id}/resume``."""

    action: ResumeAction


class Replay(_Strict):
    """``POST /v1/dead-letters/{id}/replay``: where it goes (by default, as it came)."""

    into: ReplayInto | None = None


class ReplayMany(Replay):
    """``POST /v1/dead-letters/replay``: dead letters by id, or all those of one session."""

    ids: list[Annotated[str, Field(max_length=36)]] = Field(
        default_factory=list, max_length=MAX_REPLAY
    )
    session_id: Annotated[str, Field(max_length=36)] | None = None


class Fault(BaseModel):
    """Where a faulted session stopped, and why."""

    seq: int | None
    reason: str | None


class Counters(BaseModel):
    """How many messages a session has seen."""

    sent: int
    applied: int
    parked: int
    duplicates: int
    dead: int


class SessionOut(BaseModel):
    """A session as the control plane shows it."""

    id: str
    state: SessionState
    contract: str
    endpoint: str
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime | None
    last_activity_at: datetime | None
    last_sent_at: datetime | None
    ended_at: datetime | None
    expires_at: datetime | None
    inactivity_timeout_s: float
    ttl_s: float | None
    last_sent_seq: int
    last_applied_seq: int
    counters: Counters
    close_requested: bool
    fault: Fault | None
    end_reason: str | None
    opened_by: str | None = None
    """The id of the key that opened it: a stored key's prefix, or ``config``."""
    instance_state: Any = None

    @classmethod
    def of(cls, s: SessionRecord, *, with_state: bool = True) -> SessionOut:
        """The view of a stored session."""
        return cls(
            id=s.id,
            state=s.state,
            contract=s.contract,
            endpoint=s.endpoint,
            labels=dict(s.labels),
            created_at=s.created_at,
            updated_at=s.last_changed_at,
            last_activity_at=s.last_active_at,
            last_sent_at=s.last_sent_at,
            ended_at=s.ended_at,
            expires_at=s.expires_at,
            inactivity_timeout_s=s.inactivity_timeout_s,
            ttl_s=s.ttl_s,
            last_sent_seq=s.last_sent_seq,
            last_applied_seq=s.last_applied_seq,
            counters=Counters(
                sent=s.sent_count,
                applied=s.applied_count,
                parked=s.parked_count,
                duplicates=s.duplicate_count,
                dead=s.dead_count,
            ),
            close_requested=s.close_requested,
            fault=Fault(seq=s.fault_seq, reason=s.fault_reason)
            if s.state is SessionState.FAULTED
            else None,
            end_reason=s.end_reason,
            opened_by=s.opened_by,
            instance_state=s.instance_state if with_state else None,
        )


class SessionOpened(SessionOut):
    """A session just opened, with the token that drives it (shown this once)."""

    session_token: str
    """A bearer credential for this session only: send, read, close, terminate."""

    @classmethod
    def opened(cls, s: SessionRecord, token: str) -> SessionOpened:
        """The view of a session just opened with ``token``."""
        return cls(**SessionOut.of(s).model_dump(), session_token=token)


class SessionPage(BaseModel):
    """A page of sessions and the cursor of the next one."""

    items: list[SessionOut]
    next_cursor: str | None


class Accepted(BaseModel):
    """A message accepted durably."""

    seq: int | None
    message_id: str
    status: MessageStatus

    @classmethod
    def of(cls, m: MessageRecord) -> Accepted:
        """The acceptance of a stored message."""
        return cls(seq=m.seq, message_id=m.message_id, status=m.status)


class ReplayOut(BaseModel):
    """What a replay sent: the new session's id (None for datagrams) and each message."""

    into: ReplayInto
    session_id: str | None
    messages: list[Accepted]

    @classmethod
    def of(cls, replayed: Replayed) -> ReplayOut:
        """The view of a replay."""
        return cls(
            into=replayed.into,
            session_id=replayed.session.id if replayed.session is not None else None,
            messages=[Accepted.of(sent.message) for sent in replayed.sent],
        )


class MessageOut(BaseModel):
    """A message and what became of it."""

    message_id: str
    session_id: str | None
    seq: int | None
    operation: str
    args: dict[str, Any]
    status: MessageStatus
    attempts: int
    result: Any
    error: str | None
    created_at: datetime
    applied_at: datetime | None
    next_attempt_at: datetime | None

    @classmethod
    def of(cls, m: MessageRecord) -> MessageOut:
        """The view of a stored message."""
        return cls.model_validate(m, from_attributes=True)


class MessagePage(BaseModel):
    """A page of a session's messages, in seq order."""

    items: list[MessageOut]
    next_cursor: str | None


class DeadLetterOut(BaseModel):
    """A dead letter: the message, why it died, and whether it was replayed."""

    id: str
    message_id: str
    session_id: str | None
    seq: int | None
    endpoint: str
    contract: str
    operation: str
    args: dict[str, Any]
    reason: DeadLetterReason
    detail: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    replay_message_id: str | None

    @classmethod
    def of(cls, d: DeadLetterRecord) -> DeadLetterOut:
        """The view of a stored dead letter."""
        return cls.model_validate(d, from_attributes=True)


class DeadLetterPage(BaseModel):
    """A page of dead letters."""

    items: list[DeadLetterOut]
    next_cursor: str | None


class ContractOut(BaseModel):
    """A contract served here, its endpoint and binding, and its operations."""

    name: str
    session_mode: str
    endpoint: str
    binding: str
    operations: list[dict[str, Any]]

    @classmethod
    def of(cls, endpoint: Endpoint) -> ContractOut:
        """The view of an endpoint's contract."""
        described = endpoint.contract.describe()
        return cls(
            name=described["name"],
            session_mode=described["session_mode"],
            endpoint=endpoint.name,
            binding=endpoint.binding.value,
            operations=described["operations"],
        )


class ListenerFaultOut(BaseModel):
    """Where a faulted datagram listener stopped, and why."""

    message_id: str
    reason: str
    faulted_at: datetime


class EndpointOut(BaseModel):
    """An endpoint, what it takes, and whether its datagram listener is faulted."""

    name: str
    contract: str
    binding: str
    sessions: bool
    datagrams: bool
    datagram_listener: str | None
    """``open`` or ``faulted``; None when the endpoint takes no datagrams."""
    fault: ListenerFaultOut | None

    @classmethod
    def of(cls, endpoint: Endpoint, fault: ListenerFault | None) -> EndpointOut:
        """The view of an endpoint and its listener's fault."""
        listener = ("faulted" if fault else "open") if endpoint.accepts_datagrams else None
        return cls(
            name=endpoint.name,
            contract=endpoint.contract.name,
            binding=endpoint.binding.value,
            sessions=endpoint.accepts_sessions,
            datagrams=endpoint.accepts_datagrams,
            datagram_listener=listener,
            fault=None
            if fault is None
            else ListenerFaultOut(
                message_id=fault.message_id, reason=fault.reason, faulted_at=fault.faulted_at
            ),
        )


class ListenerResumed(BaseModel):
    """A resumed datagram listener, and what became of the datagram it stopped at."""

    endpoint: EndpointOut
    message_id: str
    status: MessageStatus | None
    """``pending`` (retried), ``dead`` (skipped); None if the message is gone."""


def encode_cursor(value: str) -> str:
    """An opaque cursor for a keyset position."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The keyset position of a cursor; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"invalid cursor {cursor[:40]!r}") from e
    if not value:
        raise ValueError(f"invalid cursor {cursor[:40]!r}")
    return value
