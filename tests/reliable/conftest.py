"""The control plane with the calculator and a worker runtime, on any store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from api.app import create_app
from durable_sessions.endpoints import Endpoint
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.hosting import reliable_settings
from durable_sessions.memory_broker import MemoryBroker
from durable_sessions.runtime import Runtime
from durable_sessions.services import service_of
from durable_sessions.settings import Settings
from durable_sessions.store import Store

KEY = "test-key-123"
SOAP = "application/soap+xml; charset=utf-8"


@asynccontextmanager
async def calculator_app(
    store: Store,
    broker: MemoryBroker,
    tmp_path: Path,
    *,
    inactivity_timeout_s: float = 600.0,
    network: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a running control plane whose workers serve ``calculator``.

    ``inactivity_timeout_s`` is the WS-RM inactivity timeout of both; ``network`` wraps the
    way to the application (to lose or change what travels).
    """
    served = [(Endpoint.for_service(service_of(CalculatorService)), service_of(CalculatorService))]
    settings = Settings(
        api_keys=KEY,  # type: ignore[arg-type]
        api_keys_file=str(tmp_path / "keys"),
        reliable_inactivity_timeout_s=inactivity_timeout_s,
    )
    runtime = Runtime(
        store,
        broker.connect(),
        served,
        sweep_interval_s=0.02,
        relay_poll_interval_s=0.02,
        reliable=reliable_settings(settings),
    )
    app = create_app(
        settings, endpoints=[e for e, _ in served], store=store, transport=broker.connect()
    )
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    if network is not None:
        transport = network(transport)
    client = httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {KEY}"}
    )
    async with runtime, app.router.lifespan_context(app), client:
        yield client
