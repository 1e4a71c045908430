"""Every reliable-session setting of an endpoint takes effect over the real binding.

The settings come from ``DS_RELIABLE_SESSIONS`` (``calculator:Name=value,...``) and are shown
working over HTTP (the SOAP route) and over AMQP (the endpoint's WS-RM queue).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.hosting.composition import reliable_options
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.reliable.amqp import AmqpReliableDestination
from durable_sessions.settings import Settings
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm.messages import (
    AckRequested,
    AddressingFaultCode,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    NetRMFaultCode,
    RMAction,
    RMFaultCode,
    RMVersion,
    action_uri,
    rm_envelope,
)
from tests.reliable import documents as doc
from tests.reliable.conftest import calculator_app
from tests.reliable.test_refusals import call, serving_peer
from tests.reliable.test_soap_endpoint import create, fault_of, post, ranges
from tests.reliable.test_wakeups import session_end, wait_ended
from tests.stacks import Stack

V11, V2005 = RMVersion.WSRM_1_1, RMVersion.WSRM_2005_02


@asynccontextmanager
async def endpoint(
    tmp_path: Path, settings: str
) -> AsyncIterator[tuple[httpx.AsyncClient, MemoryStore]]:
    store = MemoryStore()
    async with calculator_app(store, MemoryNode(), tmp_path, reliable_sessions=settings) as http:
        yield http, store


def acknowledgement(answer: Envelope | None) -> tuple[list[tuple[int, int]], int | None]:
    assert answer is not None
    (ack,) = answer.acknowledgements
    return [(r.lower, r.upper) for r in ack.ranges], ack.buffer_remaining


async def test_max_transfer_window_size_drops_what_lies_beyond_it(tmp_path: Path) -> None:
    async with endpoint(tmp_path, "calculator:MaxTransferWindowSize=2") as (http, _):
        identifier = await create(http, V11, f"urn:uuid:{uuid.uuid4()}")
        three = doc.call(V11, identifier, 3, "add_to", "<n>3</n>")
        assert acknowledgement(await post(http, three)) == ([], 2)  # beyond the window: dropped
        two = doc.call(V11, identifier, 2, "add_to", "<n>2</n>")
        assert acknowledgement(await post(http, two)) == ([(2, 2)], 1)  # held, one place left
        assert acknowledgement(await post(http, doc.call(V11, identifier, 1, "clear"))) == (
            [(1, 2)],
            2,
        )


async def test_flow_control_enabled_false_advertises_no_buffer(tmp_path: Path) -> None:
    async with endpoint(tmp_path, "calculator:FlowControlEnabled=false") as (http, _):
        identifier = await create(http, V2005, f"urn:uuid:{uuid.uuid4()}")
        answer = await post(http, doc.call(V2005, identifier, 1, "clear"))
        assert acknowledgement(answer) == ([(1, 1)], None)  # no netrm:BufferRemaining


async def test_the_inactivity_timeout_of_the_endpoint_ends_its_silent_sequences(
    tmp_path: Path,
) -> None:
    async with endpoint(tmp_path, "calculator:InactivityTimeout=00:00:00.3") as (http, store):
        identifier = await create(http, V11, f"urn:uuid:{uuid.uuid4()}")
        await post(http, doc.call(V11, identifier, 1, "clear"))
        await wait_ended(store, identifier)
        state, reason, _ = await session_end(store, identifier)
    assert state is SessionState.TERMINATED
    assert reason is not None
    assert "The inactivity timeout of (00:00:00.3000000) has been exceeded." in reason


@pytest.mark.parametrize(
    ("spoken", "other"), [(V11, V2005), (V2005, V11)], ids=["1.1 only", "February 2005 only"]
)
async def test_the_endpoint_version_refuses_the_other_versions_create_sequence(
    tmp_path: Path, spoken: RMVersion, other: RMVersion
) -> None:
    name = "WSReliableMessaging11" if spoken is V11 else "WSReliableMessagingFebruary2005"
    async with endpoint(tmp_path, f"calculator:ReliableMessagingVersion={name}") as (http, _):
        refused = await post(http, doc.create_sequence(other, "urn:uuid:o1", "urn:c:1"), 400)
        assert fault_of(refused).subcodes == (AddressingFaultCode.ACTION_NOT_SUPPORTED,)
        assert f"'{other.value}/CreateSequence'" in fault_of(refused).reason
        await create(http, spoken, "urn:uuid:o2")


async def test_max_pending_channels_of_the_endpoint(tmp_path: Path) -> None:
    async with endpoint(tmp_path, "calculator:MaxPendingChannels=1") as (http, store):
        async with store.transaction():  # nothing can be accepted meanwhile
            first = asyncio.create_task(
                post(http, doc.create_sequence(V2005, "urn:uuid:p1", "urn:c:p1"))
            )
            await asyncio.sleep(0.3)
            async with asyncio.timeout(5):
                refused = await post(
                    http, doc.create_sequence(V2005, "urn:uuid:p2", "urn:c:p2"), 500
                )
        assert fault_of(refused).subcodes == (
            RMFaultCode.CREATE_SEQUENCE_REFUSED,
            NetRMFaultCode.CONNECTION_LIMIT_REACHED,
        )
        accepted = await first
        assert accepted is not None
        assert isinstance(accepted.body, CreateSequenceResponse)


async def test_over_http_every_answer_carries_the_acknowledgement(tmp_path: Path) -> None:
    """WCF's responder to an initiator it cannot address acknowledges on every response."""
    async with endpoint(tmp_path, "calculator:AcknowledgementInterval=5") as (http, _):
        identifier = await create(http, V11, f"urn:uuid:{uuid.uuid4()}")
        started = time.monotonic()
        assert ranges(await post(http, doc.call(V11, identifier, 1, "clear"))) == [(1, 1)]
        assert time.monotonic() - started < 2.0


async def test_over_amqp_acknowledgements_wait_for_the_acknowledgement_interval(
    stack: Stack,
) -> None:
    """WCF's destination batches acknowledgements for an addressable source: unasked, once
    AcknowledgementInterval has passed; an AckRequested is answered at once."""
    endpoint_ = stack.endpoint(CalculatorService)
    settings = Settings(reliable_sessions=f"{endpoint_.name}:AcknowledgementInterval=0.6")  # type: ignore[call-arg]
    options = reliable_options(settings, [endpoint_.name])[endpoint_.name]
    runtime = await stack.runtime([(endpoint_, CalculatorService)])
    destination = AmqpReliableDestination(
        stack.store, runtime.broker, endpoint_, relay=runtime.relay, options=options
    )
    async with serving_peer(stack, destination) as peer:
        created = await peer.ask(rm_envelope(CreateSequence(EndpointReference(peer.address)), V11))
        assert isinstance(created.body, CreateSequenceResponse)
        identifier = created.body.identifier
        sent = time.monotonic()
        await peer.send(call(identifier, 1, "clear"))
        await peer.send(call(identifier, 2, "add_to", n=2))
        (ack,) = (await peer.receive()).acknowledgements  # unasked, after the interval
        assert time.monotonic() - sent >= 0.5
        assert [(r.lower, r.upper) for r in ack.ranges] == [(1, 2)]
        asked = Envelope(
            action=action_uri(RMAction.ACK_REQUESTED, V11),
            ack_requested=(AckRequested(identifier),),
        )
        started = time.monotonic()
        await peer.send(asked)
        answer = await peer.receive()
        assert time.monotonic() - started < 0.5
        assert [(r.lower, r.upper) for r in answer.acknowledgements[0].ranges] == [(1, 2)]
