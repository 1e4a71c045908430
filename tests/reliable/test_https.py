"""``ReliableSessionClient`` over HTTPS: the destination's certificate is always verified."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.runtime import Runtime
from durable_sessions.errors import ConfigurationError
from durable_sessions.examples.calculator import Calculator, CalculatorService
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.services import service_of
from durable_sessions.reliable.http import ReliableSessionClient
from durable_sessions.settings import Settings
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm.settings import ReliableSessionSettings
from tests.reliable.conftest import KEY
from tests.tls import Certificates, certificates

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return certificates(tmp_path / "tls")


@pytest.fixture
def server() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def url(server: MemoryStore, certs: Certificates, tmp_path: Path) -> AsyncIterator[str]:
    """The calculator's SOAP endpoint on a real HTTPS listener (uvicorn with the certificate)."""
    node = MemoryNode()
    spec = service_of(CalculatorService)
    served = [(Endpoint.for_service(spec), spec)]
    settings = Settings(api_keys=KEY, api_keys_file=str(tmp_path / "keys"))  # type: ignore[arg-type]
    endpoints = [e for e, _ in served]
    app = create_app(settings, endpoints=endpoints, store=server, broker=node.connect())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=str(certs.cert),
        ssl_keyfile=str(certs.key),
    )
    listener = uvicorn.Server(config)
    runtime = Runtime(
        server, node.connect(), served, sweep_interval_s=0.02, relay_poll_interval_s=0.02
    )
    async with runtime:
        serving = asyncio.create_task(listener.serve())
        try:
            while not listener.started:
                assert not serving.done(), "uvicorn stopped before it listened"
                await asyncio.sleep(0.02)
            yield f"https://127.0.0.1:{port}/v1/soap/calculator"
        finally:
            listener.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving


def rm_settings() -> ReliableSessionSettings:
    return ReliableSessionSettings(initial_retry_interval=0.05)


async def test_a_session_runs_over_https_with_the_ca(url: str, certs: Certificates) -> None:
    client = ReliableSessionClient(
        url,
        Calculator,
        store=MemoryStore(),
        headers=AUTH,
        ca_file=str(certs.ca),
        settings=rm_settings(),
        send_timeout_s=10,
    )
    async with client, client.session() as calc:
        await calc.clear()
        await calc.add_to(5)
        assert await calc.equals() == 5.0


async def test_an_unknown_certificate_is_refused_at_once(url: str, server: MemoryStore) -> None:
    client = ReliableSessionClient(
        url, Calculator, store=MemoryStore(), headers=AUTH, settings=rm_settings(), send_timeout_s=5
    )
    async with client:
        with pytest.raises(ConfigurationError, match="does not verify"):
            async with client.session() as calc:
                await calc.clear()
    async with server.snapshot() as uow:
        assert sum((await uow.sessions.count_by_state()).values()) == 0
        assert (await uow.outbox.stats()).count == 0


async def test_a_ca_file_for_a_client_handed_in_is_refused(certs: Certificates) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigurationError, match="ca_file applies to the HTTP client"):
            ReliableSessionClient(
                "https://127.0.0.1:1/v1/soap/calculator",
                Calculator,
                store=MemoryStore(),
                http=http,
                ca_file=str(certs.ca),
            )
