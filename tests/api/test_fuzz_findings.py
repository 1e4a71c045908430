"""What the schemathesis run found, each kept as a regression test: on a real SQL store, numbers
past 64 bits are refused as invalid requests, and every error answered is in the OpenAPI."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.services import service_of
from durable_sessions.settings import Settings
from durable_sessions.store.sql.store import SqlStore

KEY = "fuzz-findings-key"
PROBLEM = "application/problem+json"
PAST_64_BITS = 2**63


@pytest.fixture
async def http(sqlite_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = SqlStore.from_url(sqlite_url)
    settings = Settings(api_keys=KEY, api_keys_file=str(tmp_path / "keys"))  # type: ignore[arg-type]
    endpoint = Endpoint.for_service(service_of(CalculatorService))
    app = create_app(settings, endpoints=[endpoint], store=store, broker=MemoryNode().connect())
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client,
        ):
            yield client
    finally:
        await store.close()


async def _session(http: httpx.AsyncClient) -> str:
    opened = await http.post("/v1/sessions", json={"contract": "Calculator"})
    assert opened.status_code == 201, opened.text
    sid: str = opened.json()["id"]
    return sid


@pytest.mark.parametrize("seq", [PAST_64_BITS, 79154390224097670856704, 0, -(2**70)])
async def test_a_seq_outside_the_store_range_is_an_invalid_request(
    http: httpx.AsyncClient, seq: int
) -> None:
    sid = await _session(http)
    response = await http.get(f"/v1/sessions/{sid}/messages/{seq}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == "urn:durable-sessions:problem:invalid-request"
    largest = await http.get(f"/v1/sessions/{sid}/messages/{PAST_64_BITS - 1}")
    assert largest.status_code == 404, largest.text


@pytest.mark.parametrize("after", [str(PAST_64_BITS), str(-1), "9" * 29])
async def test_a_messages_cursor_outside_the_store_range_is_an_invalid_request(
    http: httpx.AsyncClient, after: str
) -> None:
    sid = await _session(http)
    cursor = base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")
    response = await http.get(f"/v1/sessions/{sid}/messages", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "urn:durable-sessions:problem:invalid-request"


async def test_every_error_a_route_answers_is_documented_as_problem_json(
    http: httpx.AsyncClient,
) -> None:
    spec = (await http.get("/openapi.json")).json()
    opened = spec["paths"]["/v1/sessions"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "409", "413", "422", "503"):
        assert list(opened[status]["content"]) == [PROBLEM], status
    undecodable = await http.post(
        "/v1/sessions", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert str(undecodable.status_code) in opened, undecodable.text
    soap = spec["paths"]["/v1/soap/{endpoint}"]["post"]["responses"]
    for status in ("400", "404", "415", "500"):
        assert list(soap[status]["content"]) == ["application/soap+xml"], status
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
