"""``POST /v1/soap/calculator`` with hand-written WS-RM documents, in both WS-RM versions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.reliable.calls import CALL_FORMAT
from durable_sessions.reliable.host import SEQUENCE_LABEL
from durable_sessions.store.base import SessionQuery, Store
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm.messages import (
    AckRange,
    CloseSequenceResponse,
    CreateSequenceResponse,
    Envelope,
    Fault,
    NetRMFaultCode,
    Payload,
    RMFaultCode,
    RMVersion,
    TerminateSequenceResponse,
)
from durable_sessions.wsrm.xml import codec
from tests.reliable import documents as doc
from tests.reliable.conftest import SOAP, calculator_app
from tests.wsrm.schemas import validate

VERSIONS = [RMVersion.WSRM_2005_02, RMVersion.WSRM_1_1]


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def http(store: MemoryStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with calculator_app(store, MemoryNode(), tmp_path) as client:
        yield client


async def post(http: httpx.AsyncClient, document: bytes, status: int = 200) -> Envelope | None:
    response = await http.post(
        "/v1/soap/calculator", content=document, headers={"content-type": SOAP}
    )
    assert response.status_code == status, response.text
    if status == 202:
        assert response.content == b""
        return None
    assert response.headers["content-type"].startswith("application/soap+xml")
    validate(response.content)
    return codec.decode(response.content)


def ranges(answer: Envelope | None) -> list[tuple[int, int]]:
    assert answer is not None
    (ack,) = answer.acknowledgements
    return [(r.lower, r.upper) for r in ack.ranges]


def fault_of(answer: Envelope | None) -> Fault:
    assert answer is not None
    assert isinstance(answer.body, Fault)
    return answer.body


async def create(http: httpx.AsyncClient, version: RMVersion, offer: str) -> str:
    answer = await post(http, doc.create_sequence(version, offer, f"urn:create:{offer}"))
    assert answer is not None
    assert isinstance(answer.body, CreateSequenceResponse)
    assert answer.body.accept is not None
    return answer.body.identifier


async def session_of(store: Store, identifier: str) -> tuple[SessionState, object, int]:
    async with store.snapshot() as uow:
        (session,) = await uow.sessions.find(SessionQuery(labels={SEQUENCE_LABEL: identifier}))
    return session.state, session.instance_state, session.applied_count


async def wait_closed(store: Store, identifier: str) -> tuple[SessionState, object, int]:
    for _ in range(200):
        found = await session_of(store, identifier)
        if found[0] is SessionState.CLOSED:
            return found
        await asyncio.sleep(0.02)
    return await session_of(store, identifier)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.label)
async def test_a_sequence_applies_the_calculator_exactly_once_in_order(
    http: httpx.AsyncClient, store: MemoryStore, version: RMVersion
) -> None:
    offer = f"urn:uuid:offer-{version.label.replace(' ', '-')}"
    identifier = await create(http, version, offer)
    again = await post(http, doc.create_sequence(version, offer, f"urn:create:{offer}"))
    assert again is not None
    assert isinstance(again.body, CreateSequenceResponse)
    assert again.body.identifier == identifier

    add = "<n>5</n>"
    assert ranges(await post(http, doc.call(version, identifier, 2, "add_to", add))) == [(2, 2)]
    assert ranges(await post(http, doc.call(version, identifier, 1, "clear"))) == [(1, 2)]
    assert ranges(await post(http, doc.call(version, identifier, 2, "add_to", add))) == [(1, 2)]
    three = doc.call(version, identifier, 3, "multiply_by", "<n>3</n>")
    assert ranges(await post(http, three)) == [(1, 3)]
    asked = doc.envelope(version, "AckRequested", headers=doc.ack_requested(identifier))
    assert ranges(await post(http, asked)) == [(1, 3)]

    reply = await post(http, doc.call(version, identifier, 4, "equals"))
    assert reply is not None
    assert reply.relates_to == "urn:m:4"
    assert reply.sequence is not None
    assert (reply.sequence.identifier, reply.sequence.message_number) == (offer, 1)
    assert ranges(reply) == [(1, 4)]
    assert isinstance(reply.body, Payload)
    assert CALL_FORMAT.read_reply(reply.body).result == 15.0
    repeated = await post(http, doc.call(version, identifier, 4, "equals"))
    assert repeated is not None
    assert repeated.sequence == reply.sequence
    assert repeated.body == reply.body

    ack_reply = doc.acknowledgement(offer, 1, 1)
    if version is RMVersion.WSRM_1_1:
        closed = await post(http, doc.identified(version, "CloseSequence", identifier))
        assert closed is not None
        assert isinstance(closed.body, CloseSequenceResponse)
        assert closed.acknowledgements[0].final
        assert closed.acknowledgements[0].ranges == (AckRange(1, 4),)
        ended = await post(
            http,
            doc.envelope(
                version,
                "TerminateSequence",
                headers=ack_reply,
                body=f"<rm:TerminateSequence><rm:Identifier>{identifier}</rm:Identifier>"
                "</rm:TerminateSequence>",
                message_id="urn:m:terminate",
            ),
        )
        assert ended is not None
        assert isinstance(ended.body, TerminateSequenceResponse)
    else:
        last = doc.envelope(
            version, "LastMessage", headers=doc.sequence_header(identifier, 5, last=True)
        )
        assert ranges(await post(http, last)) == [(1, 5)]
        terminate = doc.envelope(
            version,
            "TerminateSequence",
            headers=ack_reply,
            body=f"<rm:TerminateSequence><rm:Identifier>{identifier}</rm:Identifier>"
            "</rm:TerminateSequence>",
        )
        await post(http, terminate, 202)

    state, instance, applied = await wait_closed(store, identifier)
    assert state is SessionState.CLOSED
    assert instance == {"result": 15.0}
    assert applied == 4
    async with store.snapshot() as uow:
        offered = await uow.sequences.get(offer)
        destination = await uow.sequences.get(identifier)
    assert offered is not None
    assert offered.ended
    assert offered.state["unacknowledged"] == []
    assert destination is not None
    assert destination.ended

    gone = await post(http, doc.call(version, identifier, 9, "add_to", add))
    assert gone is not None  # a terminated sequence ignores stragglers: a bare acknowledgement
    unknown = await post(http, doc.call(version, "urn:uuid:nope", 1, "clear"), 400)
    assert fault_of(unknown).rm_code is RMFaultCode.UNKNOWN_SEQUENCE


async def test_bad_calls_are_refused_with_a_sender_fault_and_change_nothing(
    http: httpx.AsyncClient, store: MemoryStore
) -> None:
    version = RMVersion.WSRM_1_1
    identifier = await create(http, version, "urn:uuid:offer-bad")
    not_first = await post(http, doc.call(version, identifier, 1, "add_to", "<n>1</n>"), 400)
    assert "cannot be the first operation" in fault_of(not_first).reason
    unknown = await post(http, doc.call(version, identifier, 1, "launch"), 400)
    assert "launch" in fault_of(unknown).reason
    bad_args = await post(http, doc.call(version, identifier, 2, "add_to", "<n>x</n>"), 400)
    assert "not JSON" in fault_of(bad_args).reason
    asked = doc.envelope(version, "AckRequested", headers=doc.ack_requested(identifier))
    answer = await post(http, asked)
    assert answer is not None
    assert answer.acknowledgements[0].ranges == ()


async def test_the_fifth_pending_sequence_is_refused_as_too_busy(http: httpx.AsyncClient) -> None:
    version = RMVersion.WSRM_2005_02
    for n in range(4):
        await create(http, version, f"urn:uuid:busy-{n}")
    refused = await post(http, doc.create_sequence(version, "urn:uuid:busy-4", "urn:c:4"), 500)
    fault = fault_of(refused)
    assert fault.subcodes == (
        RMFaultCode.CREATE_SEQUENCE_REFUSED,
        NetRMFaultCode.CONNECTION_LIMIT_REACHED,
    )
    taken = await post(http, doc.create_sequence(version, "urn:uuid:busy-0", "urn:c:5"), 400)
    assert fault_of(taken).rm_code is RMFaultCode.CREATE_SEQUENCE_REFUSED


HOSTILE = b"""<?xml version="1.0"?>
<!DOCTYPE s [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&b;</s:Body></s:Envelope>"""


@pytest.mark.parametrize(
    ("document", "content_type", "status"),
    [
        (b"<s:Envelope", SOAP, 400),
        (HOSTILE, SOAP, 400),
        (b"<x/>" + b" " * (300 * 1024), SOAP, 413),
        (b"{}", "application/json", 415),
    ],
    ids=["malformed", "entity-expansion", "too-large", "not-soap"],
)
async def test_bad_documents_get_a_soap_fault(
    http: httpx.AsyncClient, document: bytes, content_type: str, status: int
) -> None:
    response = await http.post(
        "/v1/soap/calculator", content=document, headers={"content-type": content_type}
    )
    assert response.status_code == status
    validate(response.content)
    assert isinstance(codec.decode(response.content).body, Fault)


async def test_unknown_endpoint_and_missing_key(http: httpx.AsyncClient) -> None:
    document = doc.create_sequence(RMVersion.WSRM_1_1, "urn:uuid:o", "urn:c:1")
    response = await http.post("/v1/soap/nowhere", content=document, headers={"content-type": SOAP})
    assert response.status_code == 404
    assert isinstance(codec.decode(response.content).body, Fault)
    anonymous = await http.post(
        "/v1/soap/calculator",
        content=document,
        headers={"content-type": SOAP, "Authorization": ""},
    )
    assert anonymous.status_code == 401


async def test_a_call_outside_any_sequence_is_refused(http: httpx.AsyncClient) -> None:
    """No RM header tells the version: the fault is February 2005's, which has no subcode."""
    call = f'<add_to xmlns="{doc.CALL}"><n>1</n></add_to>'
    document = doc.envelope(
        RMVersion.WSRM_2005_02, "urn:calculator/add_to", body=call, message_id="urn:m:1"
    )
    refused = fault_of(await post(http, document, 400))
    assert refused.reason == "The RM Destination requires the use of WSRM."


async def soap_contents(store: Store, identifiers: list[str]) -> dict[str, Any]:
    async with store.snapshot() as uow:
        sessions = await uow.sessions.find(SessionQuery(limit=1000))
        return {
            "sessions": sessions,
            "messages": [await uow.messages.for_session(s.id) for s in sessions],
            "sequences": [await uow.sequences.get(i) for i in identifiers],
            "outbox": (await uow.outbox.stats()).count,
        }


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.label)
async def test_a_sequence_belongs_to_the_key_that_created_it(
    http: httpx.AsyncClient, store: MemoryStore, version: RMVersion
) -> None:
    def client(key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=http._transport, base_url="http://test", headers={"Authorization": key}
        )

    keys = {}
    for name, role in (("a", "sender"), ("b", "sender"), ("ci", "reader")):
        made = await http.post("/v1/keys", json={"name": name, "role": role})
        keys[name] = f"Bearer {made.json()['key']}"
    async with client(keys["a"]) as a, client(keys["b"]) as b, client(keys["ci"]) as reader:
        identifier = await create(a, version, "urn:uuid:offer-of-a")
        assert ranges(await post(a, doc.call(version, identifier, 1, "clear"))) == [(1, 1)]
        for _ in range(200):
            before = await soap_contents(store, [identifier, "urn:uuid:offer-of-a"])
            if before["outbox"] == 0 and before["sessions"][0].applied_count == 1:
                break
            await asyncio.sleep(0.01)
        (session,) = before["sessions"]
        assert session.opened_by == keys["a"].removeprefix("Bearer ")[:16]
        for document in (
            doc.call(version, identifier, 2, "add_to", "<n>1</n>"),
            doc.envelope(version, "AckRequested", headers=doc.ack_requested(identifier)),
            doc.identified(version, "TerminateSequence", identifier),
            doc.envelope(
                version,
                "SequenceAcknowledgement",
                headers=doc.acknowledgement("urn:uuid:offer-of-a", 1, 1),
            ),
        ):
            refused = fault_of(await post(b, document, 403))
            assert refused.reason == "Access is denied: the sequence is another key's."
        response = await reader.post(
            "/v1/soap/calculator",
            content=doc.create_sequence(version, "urn:uuid:o-ci", "urn:create:ci"),
            headers={"content-type": SOAP},
        )
        assert response.status_code == 403
        assert response.json()["type"] == "urn:durable-sessions:problem:forbidden"
        assert await soap_contents(store, [identifier, "urn:uuid:offer-of-a"]) == before
        add = doc.call(version, identifier, 2, "add_to", "<n>1</n>")
        assert ranges(await post(a, add)) == [(1, 2)]
