"""The RM source side of the reliable-session binding, whatever carries the envelopes.

:class:`ReliableSession` drives the source engine for one sequence: it sends calls, lets the
engine retransmit, absorbs acknowledgements and replies, and saves the sequence state (and
that of the offered reply sequence) in the client's store after every step, so
``session(resume=identifier)`` in a new process continues where an old one stopped. A
:class:`Link` carries the envelopes: :mod:`~durable_sessions.reliable.http` posts them
and reads the answer on the response; :mod:`~durable_sessions.reliable.amqp` publishes them and
reads what comes back on a reply queue. Both clients subclass :class:`ReliableClient`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from durable_sessions.engine.client import ContractProxy, close_after
from durable_sessions.engine.handle import HandleState, SessionHandle
from durable_sessions.errors import MessageRejected, OperationFailed, SessionFaulted
from durable_sessions.model.contracts import OperationSpec, contract_of
from durable_sessions.model.records import SequenceRecord, utcnow
from durable_sessions.reliable.calls import Call, CallFormat, Reply, call_action
from durable_sessions.reliable.sequences import derived_id, ended, new_record, saved, seconds
from durable_sessions.store.base import Store
from durable_sessions.wsrm import snapshot
from durable_sessions.wsrm.actions import Action, Deliver, Faulted, Send
from durable_sessions.wsrm.destination import DestinationSequenceState, ReliableDestination
from durable_sessions.wsrm.errors import SequenceError, TransferWindowFull
from durable_sessions.wsrm.messages import (
    WSA_ANONYMOUS,
    CreateSequence,
    EndpointReference,
    Envelope,
    Fault,
    Offer,
    RMVersion,
)
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.source import ReliableSource, SourceSequenceState, SourceStatus

C = TypeVar("C")

DEFAULT_SEND_TIMEOUT_S = 60.0
"""How long a call (or the close) may take before ``TimeoutError`` (WCF's SendTimeout)."""


class Link(ABC):
    """How the envelopes of one sequence travel to the destination and back."""

    @property
    @abstractmethod
    def reply_address(self) -> str:
        """Where the destination sends acknowledgements and replies (anonymous: on the answer)."""

    @abstractmethod
    async def send(self, envelope: Envelope) -> Envelope | None:
        """Send ``envelope``; the answer, when it comes back at once; None if lost or later."""

    @abstractmethod
    async def receive(self, within_s: float) -> list[Envelope]:
        """Envelopes that arrived unasked, waiting up to ``within_s`` seconds for the first."""

    @abstractmethod
    async def close(self, *, ended: bool) -> None:
        """Release the link; ``ended``: the sequence is over and will not be resumed."""


class ReliableClient(ABC):
    """Opens WS-RM sequences to one destination ``address`` and calls ``contract`` through them.

    ``calls`` writes calls and reads replies (``calls.CALL_FORMAT``). Subclasses make the
    :class:`Link` of each sequence; :meth:`aclose` (or leaving ``async with``) releases what
    the client holds, and its sequences stay stored and resumable.
    """

    def __init__(
        self,
        address: str,
        contract: type[Any],
        *,
        store: Store,
        calls: CallFormat,
        settings: ReliableSessionSettings | None = None,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.address = address
        self.contract = contract_of(contract)
        self.store = store
        self.calls = calls
        self.settings = settings or ReliableSessionSettings()
        self.send_timeout_s = send_timeout_s
        self.clock = clock

    def session(self, *, resume: str | None = None) -> ReliableSession[Any]:
        """A new sequence, or (``resume``) the stored sequence with that identifier."""
        return ReliableSession(self, resume)

    @abstractmethod
    async def link(self, create_id: str) -> Link:
        """The link of the sequence that CreateSequence ``create_id`` makes (or made)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the client holds (connections it made)."""

    async def __aenter__(self) -> ReliableClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ReliableSession(Generic[C]):
    """One sequence seen from the client: ``async with`` gives the contract's proxy.

    Calls are checked before anything is sent, with the queued client's rules and errors
    (:mod:`~durable_sessions.engine.handle`). A one-way call returns once it is sent; a
    two-way call waits for its reply. A call the destination refuses raises
    :class:`~durable_sessions.errors.MessageRejected`, on that call only; its message can
    never be delivered, so the sequence faults (the destination is told) and later calls
    raise :class:`~durable_sessions.errors.SessionFaulted`. Leaving the block closes the
    sequence gracefully; if the block raised, the sequence stays stored and resumable and the
    block's exception goes on. :meth:`abort` gives up on the sequence at once.
    """

    def __init__(self, client: ReliableClient, resume: str | None) -> None:
        self.client = client
        self.source = ReliableSource(client.settings)
        self.replies = ReliableDestination(client.settings)
        self._resume = resume
        self._link: Link | None = None
        self._record: SequenceRecord | None = None
        self._state: SourceSequenceState | None = None
        self._reply_record: SequenceRecord | None = None
        self._reply_state: DestinationSequenceState | None = None
        self._create_id = uuid.uuid4().urn
        self._results: dict[str, Reply] = {}
        self._refusals: dict[str, str] = {}
        self.handle = SessionHandle(client.contract)

    @property
    def identifier(self) -> str:
        """The sequence identifier the destination assigned (once open)."""
        if self._state is None or self._state.identifier is None:
            raise SequenceError(None, "the sequence is not open yet")
        return self._state.identifier

    @property
    def sent(self) -> int:
        """How many calls the sequence has carried so far (a resumed one counts from its start)."""
        return self._state_now().next_number - 1

    @property
    def _offer(self) -> str:
        # Derived from the CreateSequence, so a resumed session finds its reply sequence.
        return derived_id(self._create_id, "offer")

    @property
    def version(self) -> RMVersion:
        """The WS-RM version spoken."""
        return self.source.version

    async def open(self) -> C:
        """Create (or resume) the sequence and return the contract's proxy."""
        if self._resume is not None:
            await self._load(self._resume)
            self._link = await self.client.link(self._create_id)
        else:
            self._link = await self.client.link(self._create_id)
            now = self.client.clock()
            state, actions = self.source.create(
                to=self.client.address,
                acks_to=self._link.reply_address,
                message_id=self._create_id,
                now=seconds(now),
            )
            self._state = state
            await self._run(actions)
            await self._until(lambda: self._state_now().status is not SourceStatus.CREATING)
        state = self._state_now()
        self.handle.opened(state.identifier or "-", sent=state.next_number - 1)
        if state.status is SourceStatus.TERMINATED:
            self.handle.closed()
        self._note_fault()
        return cast(C, ContractProxy(self.client.contract, self._call))

    async def close(self) -> None:
        """Close gracefully: wait until every message is acknowledged, then terminate.

        Closing a faulted sequence aborts it and raises
        :class:`~durable_sessions.errors.SessionFaulted`, as WCF's ``Close()`` of a faulted
        channel does.
        """
        self._note_fault()
        try:
            closing = self.handle.closing()
        except SessionFaulted:
            await self._release(ended=True)
            raise
        if closing:
            state, actions = self.source.close(self._state_now(), seconds(self.client.clock()))
            self._state = state
            await self._save()
            try:
                await self._run(actions)
                await self._until(lambda: self._state_now().status is SourceStatus.TERMINATED)
            except SessionFaulted:  # it faulted while closing: aborted, as WCF's Close()
                self.handle.aborting()
                await self._release(ended=True)
                raise
            self.handle.closed()
        await self._release(ended=True)

    async def abort(self) -> None:
        """Give up on the sequence now: the destination is told (SequenceTerminated, "Due to a
        user abort the reliable session cannot continue."), which terminates its session;
        nothing is waited for, and later calls raise
        :class:`~durable_sessions.errors.SessionAborted`.
        """
        if not self.handle.aborting():
            return
        state = self._state
        if state is not None:
            self._state, actions = self.source.abort(state, seconds(self.client.clock()))
            await self._save()
            await self._tell(actions)
        await self._release(ended=True)

    async def _release(self, *, ended: bool) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            await link.close(ended=ended)

    async def __aenter__(self) -> C:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
        else:
            # Resumable later, unless it cannot go on.
            ended = self.handle.state is not HandleState.OPENED
            await close_after(lambda: self._release(ended=ended), exc)

    # -- calling ----------------------------------------------------------------------------

    async def _call(self, op: OperationSpec, args: dict[str, Any]) -> Any:
        self._note_fault()
        self.handle.check(op)
        payload = self.client.calls.write_call(Call(op.name, args))
        await self._until(lambda: self.source.available(self._state_now()) > 0)
        message_id = uuid.uuid4().urn
        try:
            state, actions = self.source.send(
                self._state_now(),
                action=call_action(self.client.contract.name, op.name),
                payload=payload,
                now=seconds(self.client.clock()),
                message_id=message_id,
            )
        except TransferWindowFull:  # the window closed while waiting: try again
            return await self._call(op, args)
        self._state = state
        self.handle.called(op)
        await self._save()
        await self._run(actions)
        if op.one_way:
            self._raise_refusal(message_id)
            return None
        request = next(a.envelope for a in actions if isinstance(a, Send))
        await self._until(
            lambda: message_id in self._results or message_id in self._refusals, request=request
        )
        self._raise_refusal(message_id)
        reply = self._results.pop(message_id)
        if reply.error is not None:
            raise OperationFailed(op.name, reply.error)
        return op.load_result(reply.result)

    def _raise_refusal(self, message_id: str) -> None:
        reason = self._refusals.pop(message_id, None)
        if reason is not None:
            raise MessageRejected(reason)

    async def _refused(self, message_id: str | None, reason: str) -> None:
        """The destination refused the call sent as ``message_id``; nothing of it was taken.

        Its message number can never be delivered and the messages after it would wait for
        it for ever: the sequence is aborted (the destination told), the call raises.
        """
        if message_id is not None:
            self._refusals[message_id] = reason
        self._state, actions = self.source.abort(
            self._state_now(),
            seconds(self.client.clock()),
            f"The RM destination refused a message of the sequence: {reason}",
        )
        await self._save()
        self._note_fault()
        await self._tell(actions)

    async def _tell(self, actions: list[Action]) -> None:
        """Send what ``actions`` send, once, without waiting for any answer."""
        if self._link is None:
            return
        for action in actions:
            if isinstance(action, Send):
                await self._link.send(self._outgoing(action.envelope))

    def _note_fault(self) -> None:
        state = self._state
        if state is not None and state.status is SourceStatus.FAULTED:
            self.handle.faulted(state.fault.reason if state.fault else "faulted")

    def _faulted(self) -> SessionFaulted:
        self._note_fault()
        return SessionFaulted(self.handle.session_id, self.handle.fault)

    # -- the protocol loop ------------------------------------------------------------------

    def _state_now(self) -> SourceSequenceState:
        if self._state is None:
            raise SequenceError(None, "the sequence is not open yet")
        return self._state

    def _link_now(self) -> Link:
        if self._link is None:
            raise SequenceError(self._state_now().identifier, "the sequence is closed")
        return self._link

    async def _until(self, done: Callable[[], bool], *, request: Envelope | None = None) -> None:
        """Absorb arrivals and let the engine retransmit until ``done()``; TimeoutError after
        the send timeout.

        ``request`` is a two-way call waiting for its reply. The acknowledgement of another
        message may cover it before its reply is out (the destination handles envelopes
        concurrently), and the engine never resends what is acknowledged; so, like WCF's
        request channel, the call itself is resent with backoff until its reply comes (the
        destination answers a duplicate with the reply it recorded).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.client.send_timeout_s
        interval = self.client.settings.initial_retry_interval
        resend_at = loop.time() + interval
        while not done():
            state = self._state_now()
            if state.status is SourceStatus.FAULTED:
                raise self._faulted()
            wake = self.source.next_wakeup(state)
            if wake is None or loop.time() >= deadline:
                raise TimeoutError(
                    f"the reliable session did not progress within {self.client.send_timeout_s:g} s"
                )
            delay = wake - seconds(self.client.clock())
            if request is not None:
                delay = min(delay, resend_at - loop.time())
            for arrived in await self._link_now().receive(
                min(max(delay, 0.0), deadline - loop.time())
            ):
                await self._absorb(arrived)
            if request is not None and not done() and loop.time() >= resend_at:
                interval *= 2
                resend_at = loop.time() + interval
                await self._resend(request)
            # Arrivals changed the state: wake the engine on the current one.
            state, actions = self.source.wakeup(self._state_now(), seconds(self.client.clock()))
            self._state = state
            await self._save()
            await self._run(actions)

    async def _resend(self, request: Envelope) -> None:
        """Send ``request`` again once it is acknowledged (before, the engine resends it)."""
        sequence = request.sequence
        if sequence is not None and sequence.message_number in self._state_now().acknowledged:
            answer = await self._link_now().send(self._outgoing(request))
            if answer is not None:
                await self._absorb(answer, request)

    async def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if self._state_now().status is SourceStatus.FAULTED:
                return  # refused on the way: the rest would go to a sequence given up
            if isinstance(action, Send):
                answer = await self._link_now().send(self._outgoing(action.envelope))
                if answer is not None:
                    await self._absorb(answer, action.envelope)

    def _outgoing(self, envelope: Envelope) -> Envelope:
        reply_to = self._link_now().reply_address
        if envelope.reply_to is None and reply_to != WSA_ANONYMOUS:
            envelope = dataclasses.replace(envelope, reply_to=EndpointReference(reply_to))
        body = envelope.body
        if isinstance(body, CreateSequence):
            endpoint = EndpointReference(reply_to) if self.version is RMVersion.WSRM_1_1 else None
            body = dataclasses.replace(body, offer=Offer(self._offer, endpoint=endpoint))
            return dataclasses.replace(envelope, body=body)
        if self._reply_state is not None and self._reply_state.received:
            acknowledgement = self.replies.acknowledgement(self._reply_state)
            return dataclasses.replace(
                envelope, acknowledgements=(*envelope.acknowledgements, acknowledgement)
            )
        return envelope

    async def _absorb(self, answer: Envelope, request: Envelope | None = None) -> None:
        """Take in ``answer`` (to ``request``, when it came back on its response)."""
        fault = answer.body
        if isinstance(fault, Fault) and fault.identifier is None and fault.rm_code is None:
            # Not about the sequence: a refusal of the call it relates to.
            refused = answer.relates_to or (request.message_id if request else None)
            await self._refused(refused, fault.reason)
            return
        now = self.client.clock()
        state, actions = self.source.receive(self._state_now(), answer, seconds(now))
        created = self._state is not None and self._state.identifier is None
        self._state = state
        if created and state.identifier is not None:
            self._reply_state = DestinationSequenceState(
                self._offer, self.client.address, last_received=seconds(now), accepted=True
            )
        sequence = answer.sequence
        if (
            sequence is not None
            and self._reply_state is not None
            and sequence.identifier == self._reply_state.identifier
        ):
            self._reply_state, delivered = self.replies.receive(
                self._reply_state, answer, seconds(now)
            )
            for action in delivered:
                if isinstance(action, Deliver) and action.payload is not None:
                    reply = self.client.calls.read_reply(action.payload)
                    self._results[answer.relates_to or ""] = reply
        await self._save()
        if any(isinstance(action, Faulted) for action in actions):
            await self._tell(actions)
            raise self._faulted()
        await self._run(actions)

    # -- storing ----------------------------------------------------------------------------

    async def _save(self) -> None:
        state = self._state
        if state is None or state.identifier is None:
            return  # nothing durable before the destination answers CreateSequence
        now = self.client.clock()
        endpoint = self.client.contract.name
        async with self.client.store.transaction() as uow:
            if self._record is None:
                self._record = new_record(
                    self.source,
                    state,
                    identifier=state.identifier,
                    endpoint=endpoint,
                    now=now,
                    create_message_id=self._create_id,
                )
                await uow.sequences.add(self._record)
            else:
                self._record = await uow.sequences.update(
                    saved(self._record, self.source, state, now)
                )
            replies = self._reply_state
            if replies is None:
                return
            if self._reply_record is None:
                self._reply_record = new_record(
                    self.replies,
                    replies,
                    identifier=replies.identifier,
                    endpoint=endpoint,
                    now=now,
                )
                await uow.sequences.add(self._reply_record)
                return
            reply_record = saved(self._reply_record, self.replies, replies, now)
            if self._record.ended:
                # No reply can come once the request sequence is over; nothing to wake up for.
                reply_record = ended(reply_record, now)
            self._reply_record = await uow.sequences.update(reply_record)

    async def _load(self, identifier: str) -> None:
        async with self.client.store.snapshot() as uow:
            record = await uow.sequences.get(identifier)
            if record is None:
                raise SequenceError(identifier, f"no stored sequence {identifier!r} to resume")
            self._record = record
            self._state = snapshot.load_source(record.state)
            self._create_id = record.create_message_id or self._create_id
            offered = await uow.sequences.get(self._offer)
        if offered is not None:
            self._reply_record = offered
            self._reply_state = snapshot.load_destination(offered.state)
