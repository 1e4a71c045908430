"""Run services in memory, for tests: the store and broker twins under a real runtime.

::

    async with run_in_memory(CalculatorService) as runtime:
        async with runtime.client.session(Calculator) as calc:
            await calc.clear()
            await calc.add_to(2)
            assert await calc.equals() == 2

The twins enforce the same rules as PostgreSQL and RabbitMQ (one behaviour suite runs against
both), so what passes here exercises the same ordering, deduplication and poison handling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.instancing import Throttles
from durable_sessions.engine.runtime import Runtime
from durable_sessions.model.endpoints import Endpoint, PoisonPolicy
from durable_sessions.model.records import utcnow
from durable_sessions.model.services import service_of
from durable_sessions.store.memory import MemoryStore

FAST_POISON = PoisonPolicy(receive_retry_count=0, max_retry_cycles=0, retry_cycle_delay_s=0.0)
"""Give up on a failing message at once: handy when a test expects a failure."""


@asynccontextmanager
async def run_in_memory(
    *services: type,
    poison: PoisonPolicy | None = None,
    throttles: Throttles | None = None,
    interval_s: float = 0.02,
    clock: Callable[[], datetime] = utcnow,
) -> AsyncIterator[Runtime]:
    """A started runtime serving ``services`` on a fresh memory store and broker."""
    node = MemoryNode()
    store = MemoryStore()
    served = [(Endpoint.for_service(service_of(s), poison=poison), service_of(s)) for s in services]
    runtime = Runtime(
        store,
        node.connect(),
        served,
        throttles=throttles,
        sweep_interval_s=interval_s,
        relay_poll_interval_s=interval_s,
        clock=clock,
    )
    async with runtime:
        yield runtime
