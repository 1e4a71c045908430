"""WCF's MaxPendingChannels: idle sequences are accepted and hold no place; only sequences not
yet accepted (their session still being opened) count, per endpoint and per process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.examples.calculator import Calculator, CalculatorService
from durable_sessions.reliable.pending import PendingChannels
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm.messages import (
    CreateSequenceResponse,
    FaultCode,
    NetRMFaultCode,
    RMFaultCode,
    RMVersion,
)
from tests.reliable import documents as doc
from tests.reliable.conftest import calculator_app
from tests.reliable.test_amqp import served
from tests.reliable.test_soap_endpoint import create, fault_of, post
from tests.stacks import Stack

V2005 = RMVersion.WSRM_2005_02


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def http(store: MemoryStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with calculator_app(store, MemoryNode(), tmp_path) as client:
        yield client


def test_a_sequence_is_pending_only_while_it_is_taken_and_one_over_the_limit_is_not_counted() -> (
    None
):
    pending = PendingChannels(2)
    with pending.waiting() as first, pending.waiting() as second:
        assert (first, second, pending.count) == (0, 1, 2)
        with pending.waiting() as third:
            assert (third, pending.count) == (2, 2)  # refused: holds no place
    assert pending.count == 0


async def test_idle_sequences_never_lock_out_a_new_one(http: httpx.AsyncClient) -> None:
    """Six sequences that never send a message, then a seventh: WCF accepted them all."""
    for n in range(7):
        await create(http, V2005, f"urn:uuid:idle-{n}")
    taken = await post(http, doc.create_sequence(V2005, "urn:uuid:idle-0", "urn:c:again"), 400)
    assert fault_of(taken).rm_code is RMFaultCode.CREATE_SEQUENCE_REFUSED  # the offer is in use


async def test_sequences_not_yet_accepted_beyond_the_limit_are_refused_as_too_busy(
    http: httpx.AsyncClient, store: MemoryStore
) -> None:
    """While the store cannot open their sessions, 4 sequences wait; the fifth is refused."""
    async with store.transaction():  # holds the store's one writer: nothing can be accepted
        waiting = [
            asyncio.create_task(
                post(http, doc.create_sequence(V2005, f"urn:uuid:slow-{n}", f"urn:c:slow-{n}"))
            )
            for n in range(4)
        ]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in waiting)
        async with asyncio.timeout(5):  # refused at once, without waiting for the store
            refused = await post(
                http, doc.create_sequence(V2005, "urn:uuid:slow-4", "urn:c:4"), 500
            )
    fault = fault_of(refused)
    assert fault.code is FaultCode.RECEIVER
    assert fault.subcodes == (
        RMFaultCode.CREATE_SEQUENCE_REFUSED,
        NetRMFaultCode.CONNECTION_LIMIT_REACHED,
    )
    assert fault.reason.startswith("Server 'http://test/v1/soap/calculator' is too busy")
    for answer in await asyncio.gather(*waiting):
        assert answer is not None
        assert isinstance(answer.body, CreateSequenceResponse)
    await create(http, V2005, "urn:uuid:slow-5")  # accepted: the places are free again


async def test_idle_sequences_over_amqp_never_lock_out_a_new_one(stack: Stack) -> None:
    async with served(stack, CalculatorService, Calculator) as client:
        sessions = [client.session() for _ in range(6)]
        for session in sessions:
            await session.open()
        async with client.session() as calc:
            await calc.clear()
            assert await calc.equals() == 0.0
        for session in sessions:
            await session.abort()
