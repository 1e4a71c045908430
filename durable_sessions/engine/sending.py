"""The send path: open a session, send a message, send a datagram — inside one transaction.

A send validates the call, locks the session's send side (not its state: appliers of the session
go on meanwhile), allocates its next ``seq``, and writes the message (the inbox row) and an
outbox entry in the caller's :class:`~durable_sessions.engine.outbox.OutboxTransaction`: once
that commits, the send is durable. A message id given by the caller makes the send idempotent:
the same id again returns the original message and writes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from durable_sessions.engine.outbox import OutboxTransaction, outbox_entry
from durable_sessions.errors import (
    ConfigurationError,
    MessageIdConflict,
    MessageRejected,
    NotInitiating,
    SessionError,
    SessionNotFound,
    SessionNotOpen,
    SessionsNotAllowed,
    TerminatingOperationCalled,
)
from durable_sessions.model.contracts import ContractSpec, OperationSpec, SessionMode
from durable_sessions.model.endpoints import Binding, Endpoint
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    JSON,
    STALL_AFTER,
    MessageRecord,
    OutboxRecord,
    SessionRecord,
    new_id,
)
from durable_sessions.store.base import SessionLock, UnitOfWork

MAX_MESSAGE_ID = 200
MAX_LABELS = 20


@dataclass(frozen=True, slots=True)
class Sent:
    """The outcome of a send."""

    message: MessageRecord
    outbox: OutboxRecord | None
    """The entry that publishes it; None when the send repeated an earlier one."""

    @property
    def duplicate(self) -> bool:
        """True when the message id was seen before and nothing new was written."""
        return self.outbox is None


async def open_session(
    uow: UnitOfWork,
    endpoint: Endpoint,
    now: datetime,
    *,
    inactivity_timeout_s: float,
    ttl_s: float | None,
    labels: Mapping[str, str] | None = None,
    session_id: str | None = None,
    opened_by: str | None = None,
    token_digest: str | None = None,
) -> SessionRecord:
    """Create an open session on ``endpoint``, recording who opened it and its token's digest."""
    if not endpoint.accepts_sessions:
        raise SessionsNotAllowed(_sessionless_text(endpoint))
    if inactivity_timeout_s <= 0 or (ttl_s is not None and ttl_s <= 0):
        raise ConfigurationError("session timeouts must be greater than zero")
    labels = dict(labels or {})
    _check_labels(labels)
    session = SessionRecord(
        id=session_id or new_id(),
        contract=endpoint.contract.name,
        endpoint=endpoint.name,
        created_at=now,
        labels=labels,
        inactivity_timeout_s=inactivity_timeout_s,
        ttl_s=ttl_s,
        last_activity_at=now,
        updated_at=now,
        progress_at=now,
        opened_by=opened_by,
        token_digest=token_digest,
    )
    await uow.sessions.add(session)
    return session


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One message to send: to a session, or (``session_id`` None) a datagram."""

    endpoint: Endpoint
    session_id: str | None
    operation: str
    args: Mapping[str, JSON]
    message_id: str | None = None


Refusal = SessionError | MessageRejected | ConfigurationError
"""Why one request of a batch was refused (nothing was written for it)."""


async def send_many(
    tx: OutboxTransaction, requests: Sequence[SendRequest], now: datetime
) -> list[Sent | Refusal]:
    """Send several messages in one transaction, each by the rules of the module docstring.

    Returns, per request, what was sent or why it was refused; a refusal writes nothing. The
    send sides of the sessions involved are locked in id order first, then messages, send
    watermarks and outbox entries are written in batches.
    """
    results: list[Sent | Refusal | None] = [None] * len(requests)
    valid: list[tuple[int, SendRequest, OperationSpec, dict[str, JSON]]] = []
    for index, request in enumerate(requests):
        try:
            valid.append((index, request, *_validate(request)))
        except (MessageRejected, ConfigurationError) as refusal:
            results[index] = refusal
    uow = tx.uow
    session_ids = sorted({r.session_id for _, r, _, _ in valid if r.session_id is not None})
    sessions = (
        await uow.sessions.get_many(session_ids, lock=SessionLock.SENDS) if session_ids else {}
    )
    given = [r.message_id for _, r, _, _ in valid if r.message_id is not None]
    known = await uow.messages.get_many(given) if given else {}
    fresh: list[tuple[int, MessageRecord, OutboxRecord]] = []
    touched: dict[str, SessionRecord] = {}
    for index, request, op, args in valid:
        try:
            message, session, repeated = _prepare(request, op, args, sessions, touched, known, now)
        except (SessionError, MessageRejected) as refusal:
            results[index] = refusal
            continue
        if repeated:
            results[index] = Sent(message, None)
            continue
        if session is not None:
            touched[session.id] = session
        if request.message_id is not None:
            known[request.message_id] = message
        fresh.append((index, message, outbox_entry(request.endpoint, message, now, tx.claim)))
    await uow.messages.add_many([message for _, message, _ in fresh])
    await uow.sessions.update_many(list(touched.values()))
    entries = await tx.publish([entry for _, _, entry in fresh])
    for (index, message, _), entry in zip(fresh, entries, strict=True):
        results[index] = Sent(message, entry)
    return [r for r in results if r is not None]


def _validate(request: SendRequest) -> tuple[OperationSpec, dict[str, JSON]]:
    endpoint = request.endpoint
    if request.session_id is None and not endpoint.accepts_datagrams:
        raise ConfigurationError(
            f"contract {endpoint.contract.name!r} requires sessions (SessionMode.REQUIRED): "
            f"open a session on endpoint {endpoint.name!r} to call {request.operation!r}"
        )
    op = endpoint.contract.operation(request.operation)
    args = op.validate_args(request.args)
    _check_message_id(request.message_id)
    return op, args


def _prepare(
    request: SendRequest,
    op: OperationSpec,
    args: dict[str, JSON],
    sessions: Mapping[str, SessionRecord],
    touched: Mapping[str, SessionRecord],
    known: Mapping[str, MessageRecord],
    now: datetime,
) -> tuple[MessageRecord, SessionRecord | None, bool]:
    """The message to write, its session's new state, and whether the send is a repeat."""
    endpoint, session = request.endpoint, None
    if request.session_id is not None:
        session = touched.get(request.session_id) or sessions.get(request.session_id)
        if session is None or session.endpoint != endpoint.name:
            raise SessionNotFound(request.session_id)
    earlier = None if request.message_id is None else known.get(request.message_id)
    if earlier is not None:
        return _same_call(earlier, request.session_id, op), session, True
    seq = None
    if session is not None:
        _check_can_send(session, op, endpoint)
        seq = session.last_sent_seq + 1
        # The stall clock of a message runs from its send, or from the check already due for
        # the messages sent before it that still wait.
        waiting = session.last_applied_seq < session.last_sent_seq
        session = dataclasses.replace(
            session,
            last_sent_seq=seq,
            terminating_seq=seq if op.terminating else None,
            last_sent_at=now,
            stall_check_at=(
                session.stall_check_at
                if waiting and session.stall_check_at is not None
                else now + STALL_AFTER
            ),
        )
    message = MessageRecord(
        message_id=request.message_id or new_id(),
        endpoint=endpoint.name,
        contract=endpoint.contract.name,
        operation=op.name,
        args=args,
        created_at=now,
        session_id=request.session_id,
        seq=seq,
        updated_at=now,
    )
    return message, session, False


async def send(
    tx: OutboxTransaction,
    endpoint: Endpoint,
    session_id: str,
    operation: str,
    args: Mapping[str, JSON],
    now: datetime,
    *,
    message_id: str | None = None,
) -> Sent:
    """Send one message to an open session; see the module docstring for the rules."""
    request = SendRequest(endpoint, session_id, operation, args, message_id)
    return _one(await send_many(tx, [request], now))


async def send_datagram(
    tx: OutboxTransaction,
    endpoint: Endpoint,
    operation: str,
    args: Mapping[str, JSON],
    now: datetime,
    *,
    message_id: str | None = None,
) -> Sent:
    """Send one message outside any session to an endpoint that takes datagrams."""
    request = SendRequest(endpoint, None, operation, args, message_id)
    return _one(await send_many(tx, [request], now))


def _one(results: list[Sent | Refusal]) -> Sent:
    (result,) = results
    if isinstance(result, Sent):
        return result
    raise result


def _check_can_send(session: SessionRecord, op: OperationSpec, endpoint: Endpoint) -> None:
    # As a WCF channel: once its terminating operation is called, that is the answer, whether
    # or not the session has been closed by it yet.
    if session.terminating_seq is not None:
        raise TerminatingOperationCalled(
            f"session {session.id!r} cannot send more messages because its terminating "
            f"operation was already called (seq {session.terminating_seq})"
        )
    if session.state is not SessionState.OPEN:
        raise SessionNotOpen(session.id, session.state.value)
    if session.last_sent_seq == 0 and not op.initiating:
        raise NotInitiating(not_initiating_text(op, endpoint.contract))


def _sessionless_text(endpoint: Endpoint) -> str:
    """Why ``endpoint`` refuses sessions, and what to do instead."""
    contract = endpoint.contract
    if contract.session_mode is SessionMode.NOT_ALLOWED:
        return (
            f"contract {contract.name!r} does not allow sessions (SessionMode.NOT_ALLOWED): "
            f"send datagrams to endpoint {endpoint.name!r} instead"
        )
    return (
        f"endpoint {endpoint.name!r} serves contract {contract.name!r} on the "
        f"'{endpoint.binding}' binding, which has no sessions: send datagrams, or serve the "
        f"contract on the '{Binding.QUEUED_SESSION}' binding"
    )


def not_initiating_text(op: OperationSpec, contract: ContractSpec) -> str:
    """WCF's error for a non-initiating first call, with the operations that may start."""
    starters = ", ".join(o.name for o in contract.operations.values() if o.initiating)
    return (
        f"The operation {op.name!r} cannot be the first operation to be called because it is "
        f"not initiating; start the session with one of: {starters}"
    )


def _same_call(earlier: MessageRecord, session_id: str | None, op: OperationSpec) -> MessageRecord:
    if earlier.session_id != session_id or earlier.operation != op.name:
        raise MessageIdConflict(
            f"message id {earlier.message_id!r} is already used by another message"
        )
    return earlier


def _check_message_id(message_id: str | None) -> None:
    if message_id is not None and not 0 < len(message_id) <= MAX_MESSAGE_ID:
        raise MessageRejected(f"a message id must have 1 to {MAX_MESSAGE_ID} characters")


def _check_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise ConfigurationError(f"a session may have at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not (0 < len(key) <= 100 and isinstance(value, str) and len(value) <= 200):
            raise ConfigurationError(
                "label keys must have 1 to 100 characters and values at most 200"
            )
