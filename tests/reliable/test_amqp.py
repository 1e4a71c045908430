"""The reliable-session binding over AMQP: the calculator sequence, on the twins and RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import pytest
from pydantic import BaseModel

from durable_sessions import SessionMode, contract, operation, service
from durable_sessions.errors import MessageRejected, NotInitiating, SessionNotOpen
from durable_sessions.examples.calculator import Calculator, CalculatorService
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import OutboxRecord, utcnow
from durable_sessions.reliable.amqp import (
    AmqpReliableDestination,
    AmqpReliableSessionClient,
    reply_queue,
)
from durable_sessions.reliable.client import Link
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings
from tests.reliable.test_http_client import NewerCalculator, wait_state
from tests.reliable.test_soap_endpoint import VERSIONS, wait_closed
from tests.stacks import Stack


class RecordingClient(AmqpReliableSessionClient):
    """Remembers the reply queues it declared, for the clean-up of a failed test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.declared: list[str] = []

    async def link(self, create_id: str) -> Link:
        self.declared.append(reply_queue(create_id))
        return await super().link(create_id)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.label)
async def test_the_calculator_sequence_over_amqp(stack: Stack, version: RMVersion) -> None:
    endpoint = stack.endpoint(CalculatorService)
    runtime = await stack.runtime([(endpoint, CalculatorService)])
    destination = AmqpReliableDestination(
        stack.store, runtime.broker, endpoint, relay=runtime.relay
    )
    serving = asyncio.create_task(destination.run())
    broker = await stack.connect()
    stack.exits.push_async_callback(broker.close)
    settings = ReliableSessionSettings(version=version, initial_retry_interval=0.2)
    client = RecordingClient(
        destination.address,
        Calculator,
        broker=broker,
        store=MemoryStore(),
        settings=settings,
        send_timeout_s=20,
    )
    try:
        async with client:
            session = client.session()
            async with session as calc:
                await calc.clear()
                await calc.add_to(5)
                await calc.multiply_by(3)
                assert await calc.equals() == 15.0
    finally:
        await destination.stop()
        await serving
        gone = [await broker.publish([_probe(q)]) for q in client.declared]
        for queue in client.declared:
            await broker.delete_queue(queue)
    assert gone == [[False]], "the reply queue outlived its sequence"
    state, instance, applied = await wait_closed(stack.store, session.identifier)
    assert (state, instance, applied) == (SessionState.CLOSED, {"result": 15.0}, 4)


def _probe(queue: str) -> OutboxRecord:
    return OutboxRecord(exchange="", routing_key=queue, body=b"probe", created_at=utcnow())


async def test_a_destination_stopped_as_it_starts_ends(stack: Stack) -> None:
    endpoint = stack.endpoint(CalculatorService)
    runtime = await stack.runtime([(endpoint, CalculatorService)])
    destination = AmqpReliableDestination(stack.store, runtime.broker, endpoint)
    serving = asyncio.create_task(destination.run())
    await destination.stop()  # before the task has started to consume
    async with asyncio.timeout(10):
        await serving


@contract(session_mode=SessionMode.REQUIRED)
class Sleeper(Protocol):
    """A two-way call whose reply takes as long as it is asked to."""

    @operation
    async def begin(self) -> None: ...

    @operation(initiating=False)
    async def nap(self, seconds: float) -> float: ...


@service(Sleeper)
class SleeperService(BaseModel):
    async def begin(self) -> None:
        pass

    async def nap(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


# The worker applies the nap inside its transaction: on the memory twin that is the store's only
# writer, so the other sequence would wait for the store, not for the destination.
@pytest.mark.parametrize(
    "stack",
    [pytest.param("postgres", marks=[pytest.mark.rabbitmq, pytest.mark.postgres])],
    indirect=True,
)
async def test_a_call_waiting_for_its_reply_holds_up_no_other_sequence(stack: Stack) -> None:
    async with served(stack, SleeperService, Sleeper) as client, client.session() as slow:
        await slow.begin()
        napping = asyncio.create_task(slow.nap(3.0))
        await asyncio.sleep(0.5)  # the nap's envelope now waits for its reply
        started = time.monotonic()
        async with client.session() as quick:
            await quick.begin()
        assert time.monotonic() - started < 2.0
        assert await napping == 3.0


async def test_calls_are_checked_before_sending_and_a_refused_one_faults_the_sequence(
    stack: Stack,
) -> None:
    async with served(stack, CalculatorService, NewerCalculator) as client:
        refused, aborted = client.session(), client.session()
        calc = await refused.open()
        with pytest.raises(NotInitiating, match="cannot be the first operation"):
            await calc.add_to(5)
        await calc.clear()
        with pytest.raises(MessageRejected, match="square_root"):
            await calc.square_root()
        with pytest.raises(SessionNotOpen, match="Faulted state: The RM destination"):
            await calc.add_to(1)
        with pytest.raises(SessionNotOpen, match="Faulted state"):
            await refused.close()

        calc = await aborted.open()
        await calc.clear()
        await aborted.abort()
        with pytest.raises(SessionNotOpen, match="has been Aborted"):
            await calc.add_to(1)
    for session in (refused, aborted):
        assert await wait_state(stack.store, session.identifier, SessionState.TERMINATED) is (
            SessionState.TERMINATED
        )


@asynccontextmanager
async def served(stack: Stack, service: type, contract: type) -> AsyncIterator[RecordingClient]:
    """A client of ``contract`` talking to a destination whose workers serve ``service``."""
    endpoint = stack.endpoint(service)
    runtime = await stack.runtime([(endpoint, service)])
    destination = AmqpReliableDestination(
        stack.store, runtime.broker, endpoint, relay=runtime.relay
    )
    serving = asyncio.create_task(destination.run())
    broker = await stack.connect()
    stack.exits.push_async_callback(broker.close)
    client = RecordingClient(
        destination.address,
        contract,
        broker=broker,
        store=MemoryStore(),
        settings=ReliableSessionSettings(initial_retry_interval=0.2),
        send_timeout_s=20,
    )
    try:
        async with client:
            yield client
    finally:
        await destination.stop()
        await serving
        for queue in client.declared:
            await broker.delete_queue(queue)
