"""The dispatcher: the queues it consumes, and its throttles (batches split by the number of
sessions, limits checked)."""

from __future__ import annotations

import asyncio

import pytest

from durable_sessions.broker.base import Delivery
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.batches import BatchOutcome, Received
from durable_sessions.engine.dispatcher import Dispatcher
from durable_sessions.engine.instancing import Throttles
from durable_sessions.engine.outbox import publish_after_commit
from durable_sessions.engine.sending import SendRequest, open_session, send_many
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model.endpoints import Binding, Endpoint
from durable_sessions.model.records import utcnow
from durable_sessions.model.services import service_of
from durable_sessions.model.wire import WireMessage
from durable_sessions.store.memory import MemoryStore
from tests.modes import AlertsService, LedgerService, PerCallTallyService, TallyService


@pytest.mark.parametrize(
    ("service", "binding", "sessions", "datagrams"),
    [
        (LedgerService, Binding.QUEUED_SESSION, True, False),
        (AlertsService, Binding.DATAGRAM, False, True),
        (TallyService, Binding.QUEUED_SESSION, True, True),
        (TallyService, Binding.RELIABLE_SESSION, True, True),
        (PerCallTallyService, Binding.DATAGRAM, False, True),
    ],
)
def test_an_allowed_contract_is_consumed_from_its_session_and_datagram_queues(
    service: type, binding: Binding, sessions: bool, datagrams: bool
) -> None:
    spec = service_of(service)
    endpoint = Endpoint.for_service(spec, binding=binding)
    topology = endpoint.topology
    expected = [q.name for q in topology.session_queues] if sessions else []
    expected += [topology.datagram_queue.name] if datagrams else []
    assert Dispatcher(MemoryStore(), MemoryNode().connect(), endpoint, spec).queues == expected


def delivery(session: str, seq: int) -> Delivery:
    wire = WireMessage("calculator", "Calculator", f"{session}-{seq}", "clear", {}, session, seq)
    return Delivery(wire.encode(), {}, "k", "q", redelivered=False, delivery_count=0)


def test_a_batch_with_too_many_sessions_is_applied_in_parts() -> None:
    spec = service_of(CalculatorService)
    dispatcher = Dispatcher(
        MemoryStore(),
        MemoryNode().connect(),
        Endpoint.for_service(spec),
        spec,
        throttles=Throttles(sessions_per_batch=2),
    )
    batch = [
        delivery(s, n) for s, n in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("d", 1), ("c", 2)]
    ]
    parts = dispatcher._split([Received.decode(d) for d in batch])
    assert [[r.wire.message_id for r in p if r.wire] for p in parts] == [
        ["a-1", "b-1", "a-2"],
        ["c-1", "d-1", "c-2"],
    ]


async def test_each_delivery_is_decoded_once_even_when_its_batch_is_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = service_of(CalculatorService)
    endpoint = Endpoint.for_service(spec)
    store, broker = MemoryStore(), MemoryNode().connect()
    await broker.declare(endpoint.topology)
    now = utcnow()
    async with publish_after_commit(store, None, now) as tx:
        sessions = [
            await open_session(tx.uow, endpoint, now, inactivity_timeout_s=600, ttl_s=None)
            for _ in range(3)
        ]
        requests = [
            SendRequest(endpoint, s.id, operation, {})
            for s in sessions
            for operation in ("clear", "clear")
        ]
        await send_many(tx, requests, now)
    assert all(await broker.publish(tx.published))
    decoded: list[bytes] = []
    decode = WireMessage.decode

    def counted(cls: type[WireMessage], body: bytes) -> WireMessage:
        decoded.append(body)
        return decode(body)

    monkeypatch.setattr(WireMessage, "decode", classmethod(counted))
    all_applied = asyncio.Event()

    def on_batch(outcome: BatchOutcome) -> None:
        if dispatcher.stats.applied == len(requests):
            all_applied.set()

    dispatcher = Dispatcher(
        store,
        broker,
        endpoint,
        spec,
        throttles=Throttles(sessions_per_batch=2),
        on_batch=on_batch,
    )
    running = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(10):
            await all_applied.wait()
    finally:
        await dispatcher.stop()
        await running
    assert dispatcher.stats.batches == 2  # one delivered batch, applied in two parts
    assert len(decoded) == len(requests)


@pytest.mark.parametrize(
    "field",
    [
        "max_batch_size",
        "sessions_per_batch",
        "prefetch",
        "max_concurrent_calls",
        "max_concurrent_sessions",
        "max_concurrent_instances",
    ],
)
def test_throttle_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match="Throttle limit must be greater than zero"):
        Throttles(**{field: 0})  # type: ignore[arg-type]
