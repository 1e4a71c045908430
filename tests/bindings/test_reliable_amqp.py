"""The reliable-session binding over AMQP: the calculator sequence, on the twins and RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durable_sessions.examples.calculator import Calculator, CalculatorService
from durable_sessions.lifecycle import SessionState
from durable_sessions.memory import MemoryStore
from durable_sessions.records import OutboxRecord, utcnow
from durable_sessions.reliable.amqp import (
    AmqpReliableDestination,
    AmqpReliableSessionClient,
    reply_queue,
)
from durable_sessions.reliable.client import Link
from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings
from tests.bindings.conftest import Stack
from tests.reliable.test_soap_endpoint import VERSIONS, wait_closed


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
        stack.store, runtime.transport, endpoint, relay=runtime.relay
    )
    serving = asyncio.create_task(destination.run())
    transport = await stack.connect()
    stack.exits.push_async_callback(transport.close)
    settings = ReliableSessionSettings(version=version, initial_retry_interval=0.2)
    client = RecordingClient(
        destination.address,
        Calculator,
        transport=transport,
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
        gone = [await transport.publish([_probe(q)]) for q in client.declared]
        for queue in client.declared:
            await transport.delete_queue(queue)
    assert gone == [[False]], "the reply queue outlived its sequence"
    state, instance, applied = await wait_closed(stack.store, session.identifier)
    assert (state, instance, applied) == (SessionState.CLOSED, {"result": 15.0}, 4)


def _probe(queue: str) -> OutboxRecord:
    return OutboxRecord(exchange="", routing_key=queue, body=b"probe", created_at=utcnow())


async def test_a_destination_stopped_as_it_starts_ends(stack: Stack) -> None:
    endpoint = stack.endpoint(CalculatorService)
    runtime = await stack.runtime([(endpoint, CalculatorService)])
    destination = AmqpReliableDestination(stack.store, runtime.transport, endpoint)
    serving = asyncio.create_task(destination.run())
    await destination.stop()  # before the task has started to consume
    async with asyncio.timeout(10):
        await serving
