"""WCF's faults for refused calls and ended sequences, over HTTP and over AMQP.

A foreign WS-RM peer (hand-written envelopes, not our client, which refuses such calls before
sending) calls an operation the contract lacks (ActionNotSupported), calls after the terminating
operation (SessionTerminated) and sends to a sequence already terminated (UnknownSequence).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from durable_sessions.broker.base import Broker, Consumer
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import OutboxRecord, utcnow
from durable_sessions.reliable.amqp import AmqpReliableDestination, queue_address
from durable_sessions.reliable.calls import CALL_FORMAT, Call, call_action
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm import faults
from durable_sessions.wsrm.messages import (
    WSA_FAULT_ACTION,
    AckRequested,
    AddressingFaultCode,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    Fault,
    FaultCode,
    RMAction,
    RMFaultCode,
    RMVersion,
    Sequence,
    TerminateSequence,
    TerminateSequenceResponse,
    action_uri,
    rm_envelope,
)
from durable_sessions.wsrm.xml import codec
from tests.reliable import documents as doc
from tests.reliable.conftest import calculator_app
from tests.reliable.test_soap_endpoint import VERSIONS, create, fault_of, post, wait_closed
from tests.stacks import Stack

V11 = RMVersion.WSRM_1_1
CHANNEL_TERMINATED = (
    "An operation marked as IsTerminating has already been invoked on this channel, causing the "
    "channel's connection to terminate. No more operations may be invoked on this channel. Please "
    "re-create the channel to continue communication."
)
DISPATCHER = "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"


def assert_action_not_supported(answer: Envelope | None, action: str) -> None:
    fault = fault_of(answer)
    assert answer is not None
    assert answer.action == WSA_FAULT_ACTION
    assert fault.code is FaultCode.SENDER
    assert fault.subcodes == (AddressingFaultCode.ACTION_NOT_SUPPORTED,)
    assert fault.reason.startswith(
        f"The message with Action '{action}' cannot be processed at the receiver, due to a "
        "ContractFilter mismatch at the EndpointDispatcher."
    )


def assert_session_terminated(answer: Envelope | None) -> None:
    fault = fault_of(answer)
    assert answer is not None
    assert answer.action == f"{DISPATCHER}/fault"
    assert fault.code is FaultCode.SENDER
    assert [(s.namespace, s.local) for s in fault.subcodes] == [  # type: ignore[union-attr]
        (DISPATCHER, "SessionTerminated")
    ]
    assert fault.reason == CHANNEL_TERMINATED


def assert_unknown_sequence(answer: Envelope | None, identifier: str) -> None:
    fault = fault_of(answer)
    assert fault.code is FaultCode.SENDER
    assert fault.rm_code is RMFaultCode.UNKNOWN_SEQUENCE
    assert fault.identifier == identifier
    assert fault.reason == faults.UNKNOWN_SEQUENCE


# -- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def http(store: MemoryStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with calculator_app(store, MemoryNode(), tmp_path) as client:
        yield client


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.label)
async def test_http_a_message_to_a_terminated_sequence_is_an_unknown_sequence(
    http: httpx.AsyncClient, store: MemoryStore, version: RMVersion
) -> None:
    identifier = await create(http, version, f"urn:uuid:{uuid.uuid4()}")
    await post(http, doc.call(version, identifier, 1, "clear"))
    if version is V11:
        terminate = doc.identified(version, "TerminateSequence", identifier)
        ended = await post(http, terminate)
        assert ended is not None
        assert isinstance(ended.body, TerminateSequenceResponse)
    else:
        last = doc.envelope(
            version, "LastMessage", headers=doc.sequence_header(identifier, 2, last=True)
        )
        await post(http, last)
        await post(http, doc.identified(version, "TerminateSequence", identifier), 202)
    assert (await wait_closed(store, identifier))[0] is SessionState.CLOSED

    straggler = await post(http, doc.call(version, identifier, 3, "add_to", "<n>1</n>"), 400)
    assert_unknown_sequence(straggler, identifier)
    asked = doc.envelope(version, "AckRequested", headers=doc.ack_requested(identifier))
    assert_unknown_sequence(await post(http, asked, 400), identifier)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.label)
async def test_http_calls_are_refused_with_wcf_dispatcher_faults(
    http: httpx.AsyncClient, store: MemoryStore, version: RMVersion
) -> None:
    identifier = await create(http, version, f"urn:uuid:{uuid.uuid4()}")
    not_first = await post(http, doc.call(version, identifier, 1, "add_to", "<n>1</n>"), 400)
    assert_action_not_supported(not_first, "urn:calc/add_to")
    unknown = await post(http, doc.call(version, identifier, 1, "launch"), 400)
    assert_action_not_supported(unknown, "urn:calc/launch")

    await post(http, doc.call(version, identifier, 1, "clear"))
    reply = await post(http, doc.call(version, identifier, 2, "equals"))
    assert reply is not None
    assert not isinstance(reply.body, Fault)
    after = await post(http, doc.call(version, identifier, 3, "add_to", "<n>1</n>"), 400)
    assert_session_terminated(after)
    state, instance, applied = await wait_closed(store, identifier)
    assert (state, instance, applied) == (SessionState.CLOSED, {"result": 0.0}, 2)


# -- over AMQP ------------------------------------------------------------------------------


@dataclass
class Peer:
    """A foreign WS-RM source over AMQP: publishes envelopes, reads its own reply queue."""

    broker: Broker
    destination: str
    queue: str
    consumer: Consumer

    @property
    def address(self) -> str:
        return queue_address(self.queue)

    async def send(self, envelope: Envelope) -> str:
        """Send ``envelope`` (its answers come to this peer's queue); its message id."""
        envelope = dataclasses.replace(
            envelope, reply_to=EndpointReference(self.address), message_id=uuid.uuid4().urn
        )
        record = OutboxRecord(
            exchange="",
            routing_key=self.destination,
            body=codec.encode(envelope, V11),
            created_at=utcnow(),
        )
        await self.broker.publish([record])
        assert envelope.message_id is not None
        return envelope.message_id

    async def receive(self, relates_to: str | None = None) -> Envelope:
        """The next envelope relating to ``relates_to`` (None: the next acknowledgement)."""
        async with asyncio.timeout(15):
            while True:
                batch = await self.consumer.next_batch(1, 0.0)
                await self.consumer.ack(batch)
                for delivery in batch:
                    answer = codec.decode(delivery.body)
                    if answer.relates_to == relates_to:
                        return answer

    async def ask(self, envelope: Envelope) -> Envelope:
        """Send ``envelope`` and return its answer."""
        return await self.receive(await self.send(envelope))


@asynccontextmanager
async def serving_peer(stack: Stack, destination: AmqpReliableDestination) -> AsyncIterator[Peer]:
    """Run ``destination`` and a :class:`Peer` on a queue of its own; both gone afterwards."""
    serving = asyncio.create_task(destination.run())
    broker = await stack.connect()
    stack.exits.push_async_callback(broker.close)
    queue = f"ds.test.peer.{uuid.uuid4().hex}"
    await broker.declare_queue(queue)
    consumer = await broker.consume([queue], 16)
    try:
        yield Peer(broker, destination.queue, queue, consumer)
    finally:
        await destination.stop()
        await serving
        await consumer.close()
        await broker.delete_queue(queue)


def call(identifier: str, number: int, operation: str, **args: object) -> Envelope:
    return Envelope(
        action=call_action("Calculator", operation),
        body=CALL_FORMAT.write_call(Call(operation, args)),  # type: ignore[arg-type]
        sequence=Sequence(identifier, number),
    )


async def test_amqp_refusals_and_an_ended_sequence_get_wcf_faults(stack: Stack) -> None:
    endpoint = stack.endpoint(CalculatorService)
    runtime = await stack.runtime([(endpoint, CalculatorService)])
    destination = AmqpReliableDestination(
        stack.store, runtime.broker, endpoint, relay=runtime.relay
    )
    async with serving_peer(stack, destination) as peer:
        created = await peer.ask(rm_envelope(CreateSequence(EndpointReference(peer.address)), V11))
        assert isinstance(created.body, CreateSequenceResponse)
        identifier = created.body.identifier
        asked = AckRequested(identifier)

        unknown = call(identifier, 1, "launch")
        assert_action_not_supported(await peer.ask(unknown), unknown.action)
        not_first = call(identifier, 1, "add_to", n=1)
        assert_action_not_supported(await peer.ask(not_first), not_first.action)
        cleared = dataclasses.replace(call(identifier, 1, "clear"), ack_requested=(asked,))
        await peer.send(cleared)
        await peer.receive()  # its acknowledgement, asked for: applied before what follows
        reply = await peer.ask(call(identifier, 2, "equals"))
        assert not isinstance(reply.body, Fault)
        assert_session_terminated(await peer.ask(call(identifier, 3, "add_to", n=1)))

        ended = await peer.ask(rm_envelope(TerminateSequence(identifier, 2), V11))
        assert isinstance(ended.body, TerminateSequenceResponse)
        straggler = await peer.ask(call(identifier, 3, "add_to", n=1))
        assert_unknown_sequence(straggler, identifier)
        request = Envelope(action=action_uri(RMAction.ACK_REQUESTED, V11), ack_requested=(asked,))
        assert_unknown_sequence(await peer.ask(request), identifier)
    state, instance, applied = await wait_closed(stack.store, identifier)
    assert (state, instance, applied) == (SessionState.CLOSED, {"result": 0.0}, 2)
