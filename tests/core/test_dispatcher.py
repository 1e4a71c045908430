"""The dispatcher's throttles: batches split by the number of sessions, limits checked."""

from __future__ import annotations

import pytest

from durable_sessions.dispatcher import Dispatcher, Throttles
from durable_sessions.endpoints import Endpoint
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.memory import MemoryStore
from durable_sessions.memory_broker import MemoryBroker
from durable_sessions.services import service_of
from durable_sessions.transport import Delivery
from durable_sessions.wire import WireMessage


def delivery(session: str, seq: int) -> Delivery:
    wire = WireMessage("calculator", "Calculator", f"{session}-{seq}", "clear", {}, session, seq)
    return Delivery(wire.encode(), {}, "k", "q", redelivered=False, delivery_count=0)


def test_a_batch_with_too_many_sessions_is_applied_in_parts() -> None:
    spec = service_of(CalculatorService)
    dispatcher = Dispatcher(
        MemoryStore(),
        MemoryBroker().connect(),
        Endpoint.for_service(spec),
        spec,
        throttles=Throttles(max_concurrent_sessions=2),
    )
    batch = [
        delivery(s, n) for s, n in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("d", 1), ("c", 2)]
    ]
    parts = dispatcher._split(batch)
    assert [[d.message_id or WireMessage.decode(d.body).message_id for d in p] for p in parts] == [
        ["a-1", "b-1", "a-2"],
        ["c-1", "d-1", "c-2"],
    ]


@pytest.mark.parametrize("field", ["max_batch_size", "prefetch", "max_concurrent_calls"])
def test_throttle_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match="Throttle limit must be greater than zero"):
        Throttles(**{field: 0})  # type: ignore[arg-type]
