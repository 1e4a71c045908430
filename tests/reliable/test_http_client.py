"""``ReliableSessionClient`` against the real control plane, in both WS-RM versions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from durable_sessions import SessionMode, contract, operation
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.errors import (
    MessageRejected,
    NotInitiating,
    SessionNotOpen,
    TerminatingOperationCalled,
)
from durable_sessions.examples.calculator import Calculator
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import SequenceRole, utcnow
from durable_sessions.reliable.http import ReliableSessionClient
from durable_sessions.store.base import Store
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm.messages import Envelope, RMAction, RMVersion, action_uri
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.xml import codec
from tests.reliable.conftest import calculator_app
from tests.reliable.test_soap_endpoint import VERSIONS, session_of, wait_closed

URL = "http://test/v1/soap/calculator"


@pytest.fixture
async def server() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def http(server: MemoryStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with calculator_app(server, MemoryNode(), tmp_path) as client:
        yield client


def client_for(
    http: httpx.AsyncClient, store: MemoryStore, version: RMVersion
) -> ReliableSessionClient:
    settings = ReliableSessionSettings(version=version, initial_retry_interval=0.05)
    return ReliableSessionClient(
        URL, Calculator, store=store, http=http, settings=settings, send_timeout_s=10
    )


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.label)
async def test_the_client_runs_a_calculator_session(
    http: httpx.AsyncClient, server: MemoryStore, version: RMVersion
) -> None:
    mine = MemoryStore()
    client = client_for(http, mine, version)
    session = client.session()
    async with session as calc:
        await calc.clear()
        await calc.add_to(5)
        await calc.multiply_by(3)
        assert await calc.equals() == 15.0
    state, instance, applied = await wait_closed(server, session.identifier)
    assert state is SessionState.CLOSED
    assert instance == {"result": 15.0}
    assert applied == 4
    later = utcnow() + timedelta(days=1)
    async with mine.snapshot() as uow:
        for role in SequenceRole:
            assert await uow.sequences.due(role, later, 10) == []  # nothing left to wake


async def test_a_restarted_client_resumes_its_sequence_from_the_store(
    http: httpx.AsyncClient, server: MemoryStore
) -> None:
    mine = MemoryStore()
    first = client_for(http, mine, RMVersion.WSRM_1_1).session()
    calc = await first.open()
    await calc.clear()
    await calc.add_to(5)
    identifier = first.identifier
    del first, calc

    resumed = client_for(http, mine, RMVersion.WSRM_1_1).session(resume=identifier)
    async with resumed as calc:
        assert resumed.sent == 2
        await calc.multiply_by(3)
        assert await calc.equals() == 15.0
    _, instance, applied = await wait_closed(server, identifier)
    assert instance == {"result": 15.0}
    assert applied == 4


async def test_the_client_closes_only_the_http_client_it_made(http: httpx.AsyncClient) -> None:
    async with ReliableSessionClient(URL, Calculator, store=MemoryStore()) as own:
        assert not own.http.is_closed
    assert own.http.is_closed
    async with client_for(http, MemoryStore(), RMVersion.WSRM_1_1) as lent:
        session = lent.session()
        async with session as calc:
            await calc.clear()
    assert not http.is_closed
    assert lent.http is http


class LosingTheFirstReply(httpx.AsyncBaseTransport):
    """Delivers the first two-way reply's acknowledgement without the reply itself."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        if self.lost or b"equalsResponse" not in content:
            return response
        self.lost += 1
        answer = codec.decode(content)
        bare = Envelope(
            action=action_uri(RMAction.SEQUENCE_ACKNOWLEDGEMENT, RMVersion.WSRM_1_1),
            acknowledgements=answer.acknowledgements,
        )
        return httpx.Response(
            200, headers=response.headers, content=codec.encode(bare, RMVersion.WSRM_1_1)
        )


async def test_a_two_way_call_acknowledged_without_its_reply_is_sent_again(
    server: MemoryStore, tmp_path: Path
) -> None:
    lossy: list[LosingTheFirstReply] = []

    def network(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        lossy.append(LosingTheFirstReply(inner))
        return lossy[-1]

    async with calculator_app(server, MemoryNode(), tmp_path, network=network) as http:
        session = client_for(http, MemoryStore(), RMVersion.WSRM_1_1).session()
        async with session as calc:
            await calc.clear()
            await calc.add_to(5)
            assert await calc.equals() == 5.0
    assert lossy[0].lost == 1


@contract(session_mode=SessionMode.REQUIRED, name="Calculator")
class NewerCalculator(Protocol):
    """The calculator as a newer client knows it: with an operation the service lacks."""

    @operation
    async def clear(self) -> None: ...

    @operation(initiating=False)
    async def add_to(self, n: float) -> None: ...

    @operation(initiating=False)
    async def square_root(self) -> float: ...

    @operation(initiating=False, terminating=True)
    async def equals(self) -> float: ...


async def wait_state(store: Store, identifier: str, state: SessionState) -> SessionState:
    for _ in range(250):
        found, _, _ = await session_of(store, identifier)
        if found is state:
            break
        await asyncio.sleep(0.02)
    return found


async def test_calls_are_checked_before_they_are_sent_and_a_refused_one_wedges_nothing(
    http: httpx.AsyncClient, server: MemoryStore
) -> None:
    session = client_for(http, MemoryStore(), RMVersion.WSRM_1_1).session()
    calc = await session.open()
    with pytest.raises(NotInitiating, match="'add_to' cannot be the first operation"):
        await calc.add_to(5)
    assert session.sent == 0  # nothing was sent for it
    await calc.clear()
    await calc.add_to(5)
    assert await calc.equals() == 5.0
    with pytest.raises(TerminatingOperationCalled, match="'equals' has already been called"):
        await calc.clear()
    await session.close()
    assert await wait_closed(server, session.identifier) == (
        SessionState.CLOSED,
        {"result": 5.0},
        3,
    )

    closed = client_for(http, MemoryStore(), RMVersion.WSRM_1_1).session()
    async with closed as calc:
        await calc.clear()
    with pytest.raises(SessionNotOpen, match="is closed"):
        await calc.add_to(1)


async def test_abort_gives_up_at_once_and_the_destination_terminates_the_session(
    http: httpx.AsyncClient, server: MemoryStore
) -> None:
    session = client_for(http, MemoryStore(), RMVersion.WSRM_1_1).session()
    async with session as calc:
        await calc.clear()
        await calc.add_to(5)
        await session.abort()
        with pytest.raises(SessionNotOpen, match="has been Aborted"):
            await calc.add_to(1)
    await session.close()  # nothing left to close
    assert await wait_state(server, session.identifier, SessionState.TERMINATED) is (
        SessionState.TERMINATED
    )


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.label)
async def test_a_call_the_destination_refuses_raises_on_that_call_only(
    http: httpx.AsyncClient, server: MemoryStore, version: RMVersion
) -> None:
    settings = ReliableSessionSettings(version=version, initial_retry_interval=0.05)
    client = ReliableSessionClient(
        URL, NewerCalculator, store=MemoryStore(), http=http, settings=settings, send_timeout_s=10
    )
    session = client.session()
    with pytest.raises(SessionNotOpen, match="Faulted state") as closing:
        async with session as calc:
            await calc.clear()
            with pytest.raises(MessageRejected, match="square_root"):
                await calc.square_root()
            with pytest.raises(SessionNotOpen, match="Faulted state: The RM destination refused"):
                await calc.add_to(1)
    assert not isinstance(closing.value, MessageRejected)
    assert await wait_state(server, session.identifier, SessionState.TERMINATED) is (
        SessionState.TERMINATED
    )
