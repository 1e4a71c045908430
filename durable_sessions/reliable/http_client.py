"""``ReliableSessionClient``: a contract's calls as a WS-RM sequence over HTTP (the RM source).

::

    async with ReliableSessionClient(
        "http://host/v1/soap/calculator", Calculator, store=store
    ) as client:
        async with client.session() as calc:
            await calc.clear()
            await calc.add_to(5)
            print(await calc.equals())  # the reply comes back in the offered sequence

The engine decides what to send and when to retransmit; the sequence state (and that of the
offered reply sequence) is saved in ``store`` after every step, so ``session(resume=id)`` in a
new process continues a sequence where the old one stopped. A one-way call returns once it is
sent; a two-way call waits for its reply. Leaving the block closes the sequence gracefully.
The client closes the HTTP client it made (not one handed in) on :meth:`aclose`, or when its
own ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import httpx

from durable_sessions.client import ContractProxy
from durable_sessions.contracts import OperationSpec, contract_of
from durable_sessions.errors import MessageRejected, OperationFailed
from durable_sessions.records import SequenceRecord, utcnow
from durable_sessions.reliable.calls import Call, call_action
from durable_sessions.reliable.sequences import derived_id, ended, new_record, saved, seconds
from durable_sessions.store import Store
from durable_sessions.wsrm import codec, snapshot
from durable_sessions.wsrm.actions import Action, Deliver, Faulted, Send
from durable_sessions.wsrm.destination import DestinationSequenceState, ReliableDestination
from durable_sessions.wsrm.errors import EnvelopeRejected, SequenceError, TransferWindowFull
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

SOAP_MEDIA_TYPE = "application/soap+xml; charset=utf-8"
DEFAULT_SEND_TIMEOUT_S = 60.0
"""How long a call (or the close) may take before ``TimeoutError`` (WCF's SendTimeout)."""


class ReliableSessionClient:
    """Opens WS-RM sequences to one SOAP endpoint and calls ``contract`` through them.

    ``http`` is an HTTP client to use (and leave open); without one the client makes its own,
    which :meth:`aclose` closes.
    """

    def __init__(
        self,
        url: str,
        contract: type[Any],
        *,
        store: Store,
        http: httpx.AsyncClient | None = None,
        headers: dict[str, str] | None = None,
        settings: ReliableSessionSettings | None = None,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.url = url
        self.contract = contract_of(contract)
        self.store = store
        self.http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self.headers = dict(headers or {})
        self.settings = settings or ReliableSessionSettings()
        self.send_timeout_s = send_timeout_s
        self.clock = clock

    def session(self, *, resume: str | None = None) -> ReliableSession[Any]:
        """A new sequence, or (``resume``) the stored sequence with that identifier."""
        return ReliableSession(self, resume)

    async def aclose(self) -> None:
        """Close the HTTP client this client made; sequences stay stored and resumable."""
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> ReliableSessionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ReliableSession(Generic[C]):
    """One sequence seen from the client: ``async with`` gives the contract's proxy."""

    def __init__(self, client: ReliableSessionClient, resume: str | None) -> None:
        self.client = client
        self.source = ReliableSource(client.settings)
        self.replies = ReliableDestination(client.settings)
        self._resume = resume
        self._record: SequenceRecord | None = None
        self._state: SourceSequenceState | None = None
        self._reply_record: SequenceRecord | None = None
        self._reply_state: DestinationSequenceState | None = None
        self._create_id = uuid.uuid4().urn
        self._results: dict[str, Any] = {}

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
        else:
            now = self.client.clock()
            state, actions = self.source.create(
                to=self.client.url,
                acks_to=WSA_ANONYMOUS,
                message_id=self._create_id,
                now=seconds(now),
            )
            self._state = state
            await self._run(actions)
            await self._until(lambda: self._state_now().status is not SourceStatus.CREATING)
        return cast(C, ContractProxy(self.client.contract, self._call))

    async def close(self) -> None:
        """Close gracefully: wait until every message is acknowledged, then terminate."""
        state = self._state_now()
        if state.status in (SourceStatus.TERMINATED, SourceStatus.FAULTED):
            return
        state, actions = self.source.close(state, seconds(self.client.clock()))
        self._state = state
        await self._save()
        await self._run(actions)
        await self._until(lambda: self._state_now().status is SourceStatus.TERMINATED)

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

    # -- calling ----------------------------------------------------------------------------

    async def _call(self, op: OperationSpec, args: dict[str, Any]) -> Any:
        payload = codec.CALL_FORMAT.write_call(Call(op.name, args))
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
        await self._save()
        await self._run(actions)
        if op.one_way:
            return None
        await self._until(lambda: message_id in self._results)
        reply = self._results.pop(message_id)
        if reply.error is not None:
            raise OperationFailed(op.name, reply.error)
        return op.load_result(reply.result)

    # -- the protocol loop ------------------------------------------------------------------

    def _state_now(self) -> SourceSequenceState:
        if self._state is None:
            raise SequenceError(None, "the sequence is not open yet")
        return self._state

    async def _until(self, done: Callable[[], bool]) -> None:
        """Let the engine retransmit and poll until ``done()``; TimeoutError after the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.client.send_timeout_s
        while not done():
            state = self._state_now()
            if state.status is SourceStatus.FAULTED:
                reason = state.fault.reason if state.fault else "faulted"
                raise SequenceError(state.identifier, reason)
            wake = self.source.next_wakeup(state)
            if wake is None or loop.time() >= deadline:
                raise TimeoutError(
                    f"the reliable session did not progress within {self.client.send_timeout_s:g} s"
                )
            delay = wake - seconds(self.client.clock())
            await asyncio.sleep(min(max(delay, 0.0), deadline - loop.time()))
            state, actions = self.source.wakeup(state, seconds(self.client.clock()))
            self._state = state
            await self._save()
            await self._run(actions)

    async def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                answer = await self._post(self._outgoing(action.envelope))
                if answer is not None:
                    await self._absorb(answer)

    def _outgoing(self, envelope: Envelope) -> Envelope:
        body = envelope.body
        if isinstance(body, CreateSequence):
            endpoint = (
                EndpointReference(WSA_ANONYMOUS) if self.version is RMVersion.WSRM_1_1 else None
            )
            body = dataclasses.replace(body, offer=Offer(self._offer, endpoint=endpoint))
            return dataclasses.replace(envelope, body=body)
        if self._reply_state is not None and self._reply_state.received:
            acknowledgement = self.replies.acknowledgement(self._reply_state)
            return dataclasses.replace(
                envelope, acknowledgements=(*envelope.acknowledgements, acknowledgement)
            )
        return envelope

    async def _post(self, envelope: Envelope) -> Envelope | None:
        try:
            response = await self.client.http.post(
                self.client.url,
                content=codec.encode(envelope, self.version),
                headers={**self.client.headers, "content-type": SOAP_MEDIA_TYPE},
            )
        except httpx.TransportError:
            return None  # lost on the way: the engine retransmits
        if response.status_code == 202 or not response.content:
            return None
        try:
            answer = codec.decode(response.content)
        except EnvelopeRejected:
            return None
        fault = answer.body
        if isinstance(fault, Fault) and fault.identifier is None and fault.rm_code is None:
            raise MessageRejected(fault.reason)
        return answer

    async def _absorb(self, answer: Envelope) -> None:
        now = self.client.clock()
        state, actions = self.source.receive(self._state_now(), answer, seconds(now))
        created = self._state is not None and self._state.identifier is None
        self._state = state
        if created and state.identifier is not None:
            self._reply_state = DestinationSequenceState(
                self._offer, self.client.url, last_received=seconds(now), accepted=True
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
                    reply = codec.CALL_FORMAT.read_reply(action.payload)
                    self._results[answer.relates_to or ""] = reply
        await self._save()
        for action in actions:
            if isinstance(action, Faulted):
                raise SequenceError(state.identifier, action.fault.reason)
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
