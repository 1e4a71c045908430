"""The control plane with the calculator and a worker runtime, on any store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from api.app import create_app
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.hosting.composition import reliable_options
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.services import service_of
from durable_sessions.reliable.wakeups import DestinationWakeups
from durable_sessions.settings import Settings
from durable_sessions.store.base import Store

KEY = "test-key-123"
SOAP = "application/soap+xml; charset=utf-8"


@asynccontextmanager
async def calculator_app(
    store: Store,
    node: MemoryNode,
    tmp_path: Path,
    *,
    inactivity_timeout_s: float = 600.0,
    reliable_sessions: str = "",
    network: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a running control plane whose workers serve ``calculator``.

    ``inactivity_timeout_s`` is the WS-RM inactivity timeout of both, ``reliable_sessions``
    their ``DS_RELIABLE_SESSIONS``; ``network`` wraps the way to the application (to lose or
    change what travels).
    """
    served = [(Endpoint.for_service(service_of(CalculatorService)), service_of(CalculatorService))]
    settings = Settings(
        api_keys=KEY,  # type: ignore[arg-type]
        api_keys_file=str(tmp_path / "keys"),
        reliable_inactivity_timeout_s=inactivity_timeout_s,
        reliable_sessions=reliable_sessions,
    )
    reliable = reliable_options(settings, [e.name for e, _ in served])
    runtime = Runtime(
        store,
        node.connect(),
        served,
        sweep_interval_s=0.02,
        relay_poll_interval_s=0.02,
        wakeups=DestinationWakeups(store, {name: o.settings for name, o in reliable.items()}),
    )
    app = create_app(settings, endpoints=[e for e, _ in served], store=store, broker=node.connect())
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    if network is not None:
        transport = network(transport)
    client = httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {KEY}"}
    )
    async with runtime, app.router.lifespan_context(app), client:
        yield client
