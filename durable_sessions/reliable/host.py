"""The RM destination of one endpoint: WS-RM sequences delivered into durable sessions.

A sequence maps onto one session of the endpoint's contract:

- CreateSequence opens the session (refused with CreateSequenceRefused/ConnectionLimitReached
  while ``max_pending_channels`` sequences wait for their first message). An offered sequence
  (Offer) becomes the source sequence that carries the replies of two-way operations.
- Each application message is an operation call (:mod:`~durable_sessions.reliable.calls`). The
  engine delivers it exactly once, in message-number order, and it goes through the send path
  (:mod:`durable_sessions.engine.sending`) with a message id derived from the sequence and the
  number, so its ``seq`` is its message number and the workers apply it like any other message.
- TerminateSequence (or the inactivity timeout) after the last message closes the session; a
  faulted sequence (the inactivity timeout before the last message, for one) terminates it.

The engine's state is loaded (row locked) and saved in the same transaction as the sends, so a
restart resumes from the store. Everything goes back on the response to the request (anonymous
addressing, as over HTTP): the acknowledgement, protocol responses, faults, and for a two-way
call its reply, with the acknowledgement of the request. A reply not ready within
``reply_wait_s`` is left out together with that acknowledgement, so the source retransmits the
request and gets the reply then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from durable_sessions.engine import sending
from durable_sessions.engine.control import close_session, terminate_session
from durable_sessions.engine.outbox import OutboxRelay, OutboxTransaction, publish_after_commit
from durable_sessions.errors import MessageRejected, NotInitiating
from durable_sessions.model.contracts import OperationSpec
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    MessageRecord,
    MessageStatus,
    SequenceRecord,
    SequenceRole,
    utcnow,
)
from durable_sessions.reliable.calls import Call, CallFormat, Reply, reply_action
from durable_sessions.reliable.sequences import derived_id, ended, new_record, saved, seconds
from durable_sessions.store.base import Store, UnitOfWork
from durable_sessions.wsrm import faults, snapshot
from durable_sessions.wsrm.actions import Action, Deliver, Faulted, Send, Terminated
from durable_sessions.wsrm.destination import DestinationSequenceState, ReliableDestination
from durable_sessions.wsrm.messages import (
    CloseSequence,
    CreateSequence,
    Envelope,
    Fault,
    Payload,
    RMAction,
    RMVersion,
    Sequence,
    TerminateSequence,
    action_uri,
    parse_action,
    reply_address,
)
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.source import ReliableSource

SEQUENCE_LABEL = "wsrm-sequence"
"""The session label that names the WS-RM sequence a session was opened for."""

SESSION_TIMEOUTS = 2
"""A sequence's session expires on its own after this many inactivity timeouts of the sequence.

The sequence's wake-up ends it first, with the WS-RM fault (see
:mod:`~durable_sessions.reliable.wakeups`); the session's own timeout is the backstop, and
like WCF's receiveTimeout it also ends a session kept open by keep-alives alone.
"""

OFFER_IN_USE = "The offered sequence identifier is already in use."


def message_id_of(identifier: str, number: int) -> str:
    """The id of the session message that message ``number`` of sequence ``identifier`` became."""
    return derived_id(identifier, number)


@dataclass(frozen=True, slots=True)
class _Received:
    """What one locked step on a destination sequence produced."""

    record: SequenceRecord
    state: DestinationSequenceState
    actions: list[Action]


class ReliableSessionHost:
    """Serves WS-RM envelopes for ``endpoint``; ``address`` is where peers send them."""

    def __init__(
        self,
        store: Store,
        endpoint: Endpoint,
        calls: CallFormat,
        *,
        address: str,
        settings: ReliableSessionSettings | None = None,
        relay: OutboxRelay | None = None,
        reply_wait_s: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        opened_by: str | None = None,
    ) -> None:
        self.store = store
        self.endpoint = endpoint
        self.calls = calls
        self.address = address
        # Sessions apply messages in seq order, so delivery into them is always ordered.
        self.settings = dataclasses.replace(settings or ReliableSessionSettings(), ordered=True)
        self.relay = relay
        self.reply_wait_s = reply_wait_s
        self.clock = clock
        self.opened_by = opened_by
        """Recorded as the opener of the sessions CreateSequence opens (see ``SessionRecord``)."""

    def destination(self, version: RMVersion) -> ReliableDestination:
        """The destination engine for ``version``."""
        return ReliableDestination(dataclasses.replace(self.settings, version=version))

    def _source(self, version: RMVersion) -> ReliableSource:
        return ReliableSource(dataclasses.replace(self.settings, version=version))

    async def handle(self, envelope: Envelope, version: RMVersion) -> Envelope | None:
        """Process one envelope; return what goes back on its response (None: nothing).

        Raises :class:`~durable_sessions.errors.MessageRejected` (or a session error) for a
        call that cannot be sent; nothing is changed then and the caller answers with a fault.
        """
        body = envelope.body
        if isinstance(body, CreateSequence):
            return await self._create(envelope, body, version)
        identifier = _destination_identifier(envelope)
        if identifier is None:
            if envelope.acknowledgements:
                async with self.store.transaction() as uow:
                    await self._acknowledge_replies(uow, envelope)
                return None
            return faults.fault_envelope(faults.wsrm_required(version), version)
        sequence = envelope.sequence
        call = None
        if sequence is not None and parse_action(envelope.action) is None:
            call = self._read(envelope)
        received = await self._receive(identifier, envelope, version, sequence, call)
        if isinstance(received, Envelope) or received is None:
            return received
        engine = self.destination(received.record.rm_version)
        answer = _answer(received.actions)
        if answer is not None or isinstance(body, TerminateSequence):
            return answer  # February 2005's TerminateSequence has no response
        if call is not None and sequence is not None:
            op = self.endpoint.contract.operation(call.operation)
            if not op.one_way:
                return await self._reply(received, sequence.message_number, op, envelope)
        return Envelope(
            action=action_uri(RMAction.SEQUENCE_ACKNOWLEDGEMENT, engine.version),
            acknowledgements=(engine.acknowledgement(received.state),),
        )

    def _read(self, envelope: Envelope) -> Call:
        call = self.calls.read_call(_payload(envelope.body))
        op = self.endpoint.contract.operation(call.operation)
        return Call(op.name, op.validate_args(call.args))

    # -- creating ---------------------------------------------------------------------------

    async def _create(
        self, request: Envelope, body: CreateSequence, version: RMVersion
    ) -> Envelope | None:
        engine = self.destination(version)
        now = self.clock()
        async with self.store.transaction() as uow:
            if request.message_id is not None:
                earlier = await uow.sequences.created_by(self.endpoint.name, request.message_id)
                if earlier is not None:
                    known = snapshot.load_destination(earlier.state)
                    return engine.create_response(known, request, self.address)
            offer = body.offer
            if offer is not None and await uow.sequences.get(offer.identifier) is not None:
                fault = faults.create_sequence_refused(OFFER_IN_USE)
                to = reply_address(request, fault=True)
                return faults.fault_envelope(fault, version, to=to, relates_to=request.message_id)
            identifier = uuid.uuid4().urn
            pending = await uow.sequences.count_pending(self.endpoint.name)
            state, actions = engine.create(
                request,
                identifier=identifier,
                pending=pending,
                address=self.address,
                now=seconds(now),
            )
            if state is not None:
                session = await sending.open_session(
                    uow,
                    self.endpoint,
                    now,
                    inactivity_timeout_s=SESSION_TIMEOUTS * self.settings.inactivity_timeout,
                    ttl_s=None,
                    labels={SEQUENCE_LABEL: identifier},
                    opened_by=self.opened_by,
                )
                await uow.sequences.add(
                    new_record(
                        engine,
                        state,
                        identifier=identifier,
                        endpoint=self.endpoint.name,
                        now=now,
                        session_id=session.id,
                        create_message_id=request.message_id,
                    )
                )
                if offer is not None:
                    await self._add_offered(uow, request, offer.identifier, session.id, version)
        return _answer(actions)

    async def _add_offered(
        self,
        uow: UnitOfWork,
        request: Envelope,
        identifier: str,
        session_id: str,
        version: RMVersion,
    ) -> None:
        engine = self._source(version)
        now = self.clock()
        state = engine.open_offered(
            identifier=identifier,
            to=reply_address(request),
            acks_to=self.address,
            now=seconds(now),
        )
        record = new_record(
            engine,
            state,
            identifier=identifier,
            endpoint=self.endpoint.name,
            now=now,
            session_id=session_id,
        )
        await uow.sequences.add(record)

    # -- receiving --------------------------------------------------------------------------

    async def _receive(
        self,
        identifier: str,
        envelope: Envelope,
        version: RMVersion,
        sequence: Sequence | None,
        call: Call | None,
    ) -> _Received | Envelope | None:
        now = self.clock()
        async with publish_after_commit(self.store, self.relay, now) as tx:
            uow = tx.uow
            record = await uow.sequences.get(identifier, lock=True)
            if (
                record is None
                or record.role is not SequenceRole.DESTINATION
                or record.endpoint != self.endpoint.name
                or record.session_id is None
            ):
                return _answer(self.destination(version).refuse_unknown(envelope))
            engine = self.destination(record.rm_version)
            state = snapshot.load_destination(record.state)
            if call is not None and sequence is not None and sequence.message_number == 1:
                op = self.endpoint.contract.operation(call.operation)
                if not op.initiating:
                    raise NotInitiating(sending.not_initiating_text(op, self.endpoint.contract))
            state, actions = engine.receive(state, envelope, seconds(now))
            await self._apply(tx, record, actions)
            await self._acknowledge_replies(uow, envelope)
            # The acknowledgement travels on this response, so none is due any more.
            state = dataclasses.replace(state, ack_due_at=None)
            record = await uow.sequences.update(saved(record, engine, state, now))
            if record.ended:
                await end_offered(uow, state, now)
        return _Received(record, state, actions)

    async def _apply(
        self, tx: OutboxTransaction, record: SequenceRecord, actions: list[Action]
    ) -> None:
        session_id = record.session_id
        assert session_id is not None  # checked by the caller
        now = self.clock()
        for action in actions:
            if isinstance(action, Deliver):
                call = self.calls.read_call(_payload(action.payload))
                await sending.send(
                    tx,
                    self.endpoint,
                    session_id,
                    call.operation,
                    call.args,
                    now,
                    message_id=message_id_of(record.identifier, action.number),
                )
            elif isinstance(action, Terminated | Faulted):
                await end_session(tx.uow, session_id, action, now)

    async def _acknowledge_replies(self, uow: UnitOfWork, envelope: Envelope) -> None:
        for ack in envelope.acknowledgements:
            record = await uow.sequences.get(ack.identifier, lock=True)
            if record is None or record.role is not SequenceRole.SOURCE or record.ended:
                continue
            engine = self._source(record.rm_version)
            now = self.clock()
            state = snapshot.load_source(record.state)
            state, _ = engine.receive(state, envelope, seconds(now))
            await uow.sequences.update(saved(record, engine, state, now))

    # -- replying ---------------------------------------------------------------------------

    async def _reply(
        self, received: _Received, number: int, op: OperationSpec, request: Envelope
    ) -> Envelope | None:
        if number > received.state.delivered_up_to:
            return None  # held behind a gap: not sent to the session yet
        message = await self._result(message_id_of(received.record.identifier, number))
        if message is None:
            return None  # not applied yet: no acknowledgement either, the source will resend
        if message.status is MessageStatus.APPLIED:
            reply = Reply(op.name, result=message.result)
        else:
            reply = Reply(op.name, error=message.error or message.status.value)
        payload = self.calls.write_reply(reply)
        engine = self.destination(received.record.rm_version)
        acknowledgement = engine.acknowledgement(received.state)
        reply_id = derived_id(message.message_id, "reply")
        offer = received.state.offer
        envelope = Envelope(
            action=reply_action(self.endpoint.name, op.name),
            body=payload,
            message_id=reply_id,
            relates_to=request.message_id,
            acknowledgements=(acknowledgement,),
        )
        if offer is None:
            return envelope  # no reverse sequence: the reply travels unreliably
        return await self._number_reply(offer.identifier, envelope)

    async def _number_reply(self, identifier: str, envelope: Envelope) -> Envelope | None:
        now = self.clock()
        async with publish_after_commit(self.store, self.relay, now) as tx:
            uow = tx.uow
            record = await uow.sequences.get(identifier, lock=True)
            if record is None or record.ended:
                return envelope
            engine = self._source(record.rm_version)
            state = snapshot.load_source(record.state)
            for kept in state.unacknowledged:
                if kept.message_id == envelope.message_id:
                    return dataclasses.replace(envelope, sequence=Sequence(identifier, kept.number))
            if engine.available(state) < 1:
                return None  # no room for another reply until the peer acknowledges
            state, actions = engine.send(
                state,
                action=envelope.action,
                payload=_payload(envelope.body),
                now=seconds(now),
                message_id=envelope.message_id,
            )
            await uow.sequences.update(saved(record, engine, state, now))
        sent = next(a.envelope for a in actions if isinstance(a, Send))
        return dataclasses.replace(envelope, sequence=sent.sequence, ack_requested=())

    async def _result(self, message_id: str) -> MessageRecord | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reply_wait_s
        delay = 0.002
        while True:
            async with self.store.snapshot() as uow:
                message = await uow.messages.get(message_id)
            if message is not None and message.status.is_final:
                return message
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(0.05, delay * 1.5)


async def end_session(
    uow: UnitOfWork, session_id: str, action: Terminated | Faulted, now: datetime
) -> None:
    """End the session of a sequence that ``action`` ended.

    A terminated sequence closes the session gracefully (unless a terminating operation is
    already closing it); a faulted one terminates it with the fault's reason.
    """
    session = await uow.sessions.get(session_id)
    if session is None:
        return
    if isinstance(action, Terminated):
        if session.state is SessionState.OPEN and session.terminating_seq is None:
            await close_session(uow, session_id, now)
    elif not session.state.is_final:
        await terminate_session(uow, session_id, action.fault.reason, now)


async def end_offered(uow: UnitOfWork, state: DestinationSequenceState, now: datetime) -> None:
    """Mark the reply sequence offered with ``state`` over, now that ``state`` has ended."""
    if state.offer is None:
        return
    offered = await uow.sequences.get(state.offer.identifier, lock=True)
    if offered is not None and not offered.ended:
        await uow.sequences.update(ended(offered, now))


def _payload(body: object) -> Payload:
    if not isinstance(body, Payload):
        raise MessageRejected("an application message needs a body naming its operation")
    return body


def named_sequences(envelope: Envelope) -> list[str]:
    """The identifiers of the sequences an envelope acts on or acknowledges."""
    named = [ack.identifier for ack in envelope.acknowledgements]
    identifier = _destination_identifier(envelope)
    return named if identifier is None else [identifier, *named]


def _destination_identifier(envelope: Envelope) -> str | None:
    if envelope.sequence is not None:
        return envelope.sequence.identifier
    body = envelope.body
    if isinstance(body, CloseSequence | TerminateSequence):
        return body.identifier
    if isinstance(body, Fault) and body.identifier is not None:
        return body.identifier  # the source gave up on the sequence (SequenceTerminated)
    if envelope.ack_requested:
        return envelope.ack_requested[0].identifier
    return None


def _answer(actions: list[Action]) -> Envelope | None:
    """The first envelope the engine sends back, unless it is a bare acknowledgement."""
    for action in actions:
        if isinstance(action, Send) and action.envelope.body is not None:
            return action.envelope
    return None
