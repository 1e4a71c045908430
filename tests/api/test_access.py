"""Keys with roles, scopes and session tokens through the real application.

Every refusal is checked to have changed nothing in the store: sessions, their messages, dead
letters, the outbox and the keys are read before and after, with nothing left in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.services import service_of
from durable_sessions.settings import Settings
from durable_sessions.store.base import DeadLetterQuery, SessionQuery, Store
from durable_sessions.store.memory import MemoryStore
from tests.api.test_api import NotesService
from tests.modes import TallyService

ADMIN = "admin-key-123"
NOTE = {"contract": "Notes", "operation": "note", "args": {"text": "hi"}}
PROBLEM = "application/problem+json"


@dataclass
class Plane:
    app: FastAPI
    store: Store
    runtime: Runtime

    def client(self, credential: str | None) -> httpx.AsyncClient:
        headers = {} if credential is None else {"Authorization": f"Bearer {credential}"}
        transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    node, store = MemoryNode(), MemoryStore()
    served = [
        (Endpoint.for_service(service_of(s)), service_of(s))
        for s in (CalculatorService, NotesService, TallyService)
    ]
    runtime = Runtime(
        store, node.connect(), served, sweep_interval_s=0.02, relay_poll_interval_s=0.02
    )
    settings = Settings(api_keys=ADMIN, api_keys_file=str(tmp_path / "keys"))  # type: ignore[arg-type]
    app = create_app(settings, endpoints=[e for e, _ in served], store=store, broker=node.connect())
    async with runtime, app.router.lifespan_context(app):
        yield Plane(app, store, runtime)


@pytest.fixture
async def admin(plane: Plane) -> AsyncIterator[httpx.AsyncClient]:
    async with plane.client(ADMIN) as http:
        yield http


async def make_key(admin: httpx.AsyncClient, name: str, role: str, **scope: str) -> str:
    created = await admin.post("/v1/keys", json={"name": name, "role": role, **scope})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


async def open_session(http: httpx.AsyncClient, contract: str = "Calculator") -> dict[str, Any]:
    opened = await http.post("/v1/sessions", json={"contract": contract})
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    return body


def send(http: httpx.AsyncClient, sid: str, operation: str = "clear", **args: object) -> Any:
    return http.post(f"/v1/sessions/{sid}/messages", json={"operation": operation, "args": args})


def assert_refused(response: httpx.Response, status: int = 403) -> dict[str, Any]:
    slug = {401: "unauthorized", 403: "forbidden"}[status]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:durable-sessions:problem:{slug}"
    return body


async def contents(store: Store) -> dict[str, Any]:
    """Everything a refusal could have changed, once nothing is in flight."""
    for _ in range(500):
        async with store.snapshot() as uow:
            sessions = await uow.sessions.find(SessionQuery(limit=1000))
            outbox = await uow.outbox.stats()
            if outbox.count == 0 and not any(s.pending for s in sessions):
                return {
                    "sessions": sessions,
                    "messages": [await uow.messages.for_session(s.id) for s in sessions],
                    "dead_letters": await uow.dead_letters.find(DeadLetterQuery(limit=1000)),
                    "keys": await uow.keys.all(),
                }
        await asyncio.sleep(0.01)
    raise AssertionError("the store did not settle")


# --- keys ----------------------------------------------------------------------------------


async def test_a_key_is_shown_once_and_listed_without_it(admin: httpx.AsyncClient) -> None:
    created = await admin.post(
        "/v1/keys", json={"name": "ci", "role": "reader", "contract": "Calculator"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("dsk_")
    assert len(key) > 40
    assert body["prefix"] == key[:16]
    assert (body["name"], body["role"], body["contract"]) == ("ci", "reader", "Calculator")
    listed = (await admin.get("/v1/keys")).json()
    assert [(k["name"], k["role"], k["contract"]) for k in listed] == [
        ("ci", "reader", "Calculator")
    ]
    assert key not in (await admin.get("/v1/keys")).text
    assert set(listed[0]) == {"name", "role", "contract", "prefix", "created_at", "last_used_at"}
    again = await admin.post("/v1/keys", json={"name": "ci", "role": "admin"})
    assert again.status_code == 409
    assert again.json()["type"] == "urn:durable-sessions:problem:key-exists"
    for bad in (
        {"name": "x", "role": "session"},
        {"name": "x", "role": "root"},
        {"name": "x", "role": "reader", "contract": "Nope"},
        {"name": "bad name", "role": "reader"},
    ):
        assert (await admin.post("/v1/keys", json=bad)).status_code == 422, bad


async def test_a_revoked_key_is_refused_at_once(plane: Plane, admin: httpx.AsyncClient) -> None:
    key = await make_key(admin, "bot", "sender")
    async with plane.client(key) as bot:
        sid = (await open_session(bot))["id"]
        before = await contents(plane.store)
        assert (await admin.delete("/v1/keys/bot")).status_code == 204
        assert_refused(await send(bot, sid), 401)
        assert_refused(await bot.post("/v1/sessions", json={"contract": "Calculator"}), 401)
        assert_refused(await bot.post(f"/v1/sessions/{sid}/close"), 401)
        after = await contents(plane.store)
    assert after == {**before, "keys": []}
    assert (await admin.get("/v1/keys")).json() == []
    assert (await admin.delete("/v1/keys/bot")).status_code == 404


async def test_last_used_is_written_at_most_once_a_minute(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    key = await make_key(admin, "ci", "reader")
    assert (await admin.get("/v1/keys")).json()[0]["last_used_at"] is None
    async with plane.client(key) as reader:
        assert (await reader.get("/v1/sessions")).status_code == 200
        first = (await admin.get("/v1/keys")).json()[0]["last_used_at"]
        assert first is not None
        assert (await reader.get("/v1/contracts")).status_code == 200
    assert (await admin.get("/v1/keys")).json()[0]["last_used_at"] == first


# --- roles ---------------------------------------------------------------------------------


async def test_a_reader_reads_and_changes_nothing(plane: Plane, admin: httpx.AsyncClient) -> None:
    sid = (await open_session(admin))["id"]
    assert (await send(admin, sid)).status_code == 202
    key = await make_key(admin, "ci", "reader")
    async with plane.client(key) as reader:
        for path in ("/v1/sessions", f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/messages"):
            assert (await reader.get(path)).status_code == 200, path
        assert (await reader.get("/v1/dead-letters")).status_code == 200
        assert (await reader.get("/v1/endpoints")).status_code == 200
        before = await contents(plane.store)
        refusals = [
            await reader.post("/v1/sessions", json={"contract": "Calculator"}),
            await send(reader, sid, "add_to", n=1),
            await reader.post("/v1/datagrams", json=NOTE),
            await reader.post(f"/v1/sessions/{sid}/close"),
            await reader.post(f"/v1/sessions/{sid}/terminate"),
            await reader.post(f"/v1/sessions/{sid}/resume", json={"action": "retry"}),
            await reader.post("/v1/endpoints/notes/resume", json={"action": "retry"}),
            await reader.post("/v1/dead-letters/replay", json={"session_id": sid}),
            await reader.post("/v1/keys", json={"name": "me", "role": "admin"}),
            await reader.get("/v1/keys"),
            await reader.delete("/v1/keys/ci"),
        ]
        for refused in refusals:
            body = assert_refused(refused)
            assert "key 'ci' (reader) may not" in body["detail"]
        assert await contents(plane.store) == before


async def test_an_operator_drives_sessions_but_sends_nothing(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    sid = (await open_session(admin))["id"]
    other = (await open_session(admin))["id"]
    key = await make_key(admin, "ops", "operator")
    async with plane.client(key) as ops:
        assert (await ops.get("/v1/sessions")).status_code == 200
        before = await contents(plane.store)
        for refused in [
            await ops.post("/v1/sessions", json={"contract": "Calculator"}),
            await send(ops, sid),
            await ops.post("/v1/datagrams", json=NOTE),
            await ops.post("/v1/keys", json={"name": "me", "role": "admin"}),
        ]:
            assert_refused(refused)
        assert await contents(plane.store) == before
        assert (await ops.post(f"/v1/sessions/{sid}/terminate")).json()["state"] == "terminated"
        assert (await ops.post(f"/v1/sessions/{other}/close")).status_code == 202


async def test_a_sender_drives_only_the_sessions_it_opened(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    mine_key, theirs_key = (
        await make_key(admin, "a", "sender"),
        await make_key(admin, "b", "sender"),
    )
    async with plane.client(mine_key) as mine, plane.client(theirs_key) as theirs:
        opened = await open_session(mine)
        sid = opened["id"]
        assert opened["opened_by"] == mine_key[:16]
        assert (await send(mine, sid)).status_code == 202
        assert (await mine.get(f"/v1/sessions/{sid}/messages/1", params={"wait": 5})).json()[
            "status"
        ] == "applied"
        sent = await mine.post("/v1/datagrams", json=NOTE)
        assert sent.status_code == 202, sent.text
        theirs_sid = (await open_session(theirs))["id"]
        admins_sid = (await open_session(admin))["id"]
        before = await contents(plane.store)
        for victim in (theirs_sid, admins_sid):
            for refused in [
                await send(mine, victim, "add_to", n=1),
                await mine.get(f"/v1/sessions/{victim}"),
                await mine.get(f"/v1/sessions/{victim}/messages"),
                await mine.post(f"/v1/sessions/{victim}/close"),
                await mine.post(f"/v1/sessions/{victim}/terminate"),
            ]:
                body = assert_refused(refused)
                assert "only on the sessions it opened" in body["detail"]
        for refused in [
            await mine.get("/v1/sessions"),
            await mine.get("/v1/dead-letters"),
            await mine.post(f"/v1/sessions/{sid}/resume", json={"action": "retry"}),
            await mine.post("/v1/dead-letters/replay", json={"session_id": sid}),
            await mine.get("/v1/keys"),
        ]:
            assert_refused(refused)
        assert await contents(plane.store) == before
        assert (await mine.post(f"/v1/sessions/{sid}/close")).status_code == 202


async def test_a_scoped_key_acts_on_its_contract_only(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    calc = (await open_session(admin))["id"]
    tally = (await open_session(admin, "Tally"))["id"]
    key = await make_key(admin, "calc-ops", "operator", contract="Calculator")
    async with plane.client(key) as ops:
        listed = await ops.get("/v1/sessions", params={"contract": "Calculator"})
        assert [s["id"] for s in listed.json()["items"]] == [calc]
        assert (await ops.get(f"/v1/sessions/{calc}")).status_code == 200
        before = await contents(plane.store)
        for refused in [
            await ops.get("/v1/sessions"),
            await ops.get("/v1/sessions", params={"contract": "Tally"}),
            await ops.get(f"/v1/sessions/{tally}"),
            await ops.post(f"/v1/sessions/{tally}/terminate"),
            await ops.post("/v1/endpoints/tally/resume", json={"action": "retry"}),
        ]:
            body = assert_refused(refused)
            assert "scoped to contract 'Calculator')" in body["detail"]
        assert await contents(plane.store) == before
        assert (await ops.post(f"/v1/sessions/{calc}/terminate")).status_code == 200


# --- session tokens ------------------------------------------------------------------------


async def test_a_session_token_drives_its_session_and_nothing_else(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    opened = await open_session(admin)
    sid, token = opened["id"], opened["session_token"]
    assert token.startswith(f"dst_{sid}_")
    other = await open_session(admin)
    async with plane.client(token) as own:
        assert (await send(own, sid)).status_code == 202
        assert (await send(own, sid, "add_to", n=2)).status_code == 202
        read = await own.get(f"/v1/sessions/{sid}/messages/2", params={"wait": 5})
        assert read.json()["status"] == "applied"
        assert (await own.get(f"/v1/messages/{read.json()['message_id']}")).status_code == 200
        assert (await own.get(f"/v1/sessions/{sid}")).json()["instance_state"] == {"result": 2}
        before = await contents(plane.store)
        for refused in [
            await send(own, other["id"]),
            await own.get(f"/v1/sessions/{other['id']}"),
            await own.post(f"/v1/sessions/{other['id']}/terminate"),
            await own.get("/v1/sessions"),
            await own.post("/v1/sessions", json={"contract": "Calculator"}),
            await own.post("/v1/datagrams", json=NOTE),
            await own.post(f"/v1/sessions/{sid}/resume", json={"action": "retry"}),
            await own.get("/v1/dead-letters"),
            await own.get("/v1/contracts"),
            await own.get("/v1/keys"),
        ]:
            assert_refused(refused)
        assert await contents(plane.store) == before
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        async with plane.client(forged) as forger:
            assert_refused(await send(forger, sid, "add_to", n=1), 401)
        async with plane.client(other["session_token"]) as neighbour:
            assert_refused(await send(neighbour, sid, "add_to", n=1))
        assert await contents(plane.store) == before
        assert (await own.post(f"/v1/sessions/{sid}/terminate")).json()["state"] == "terminated"
        ended = await contents(plane.store)
        body = assert_refused(await own.get(f"/v1/sessions/{sid}"), 401)
        assert "terminated" in body["detail"]
        assert_refused(await send(own, sid, "add_to", n=1), 401)
        assert await contents(plane.store) == ended


async def test_a_session_token_dies_when_its_session_closes_or_expires(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    closing = await open_session(admin)
    expiring = (
        await admin.post("/v1/sessions", json={"contract": "Tally", "inactivity_timeout_s": 0.2})
    ).json()
    async with plane.client(closing["session_token"]) as own:
        for operation in ("clear", "equals"):
            assert (await send(own, closing["id"], operation)).status_code == 202
    for _ in range(500):
        states = [
            (await admin.get(f"/v1/sessions/{s['id']}")).json()["state"]
            for s in (closing, expiring)
        ]
        if states == ["closed", "expired"]:
            break
        await asyncio.sleep(0.01)
    assert states == ["closed", "expired"]
    before = await contents(plane.store)
    for session, state in ((closing, "closed"), (expiring, "expired")):
        async with plane.client(session["session_token"]) as own:
            body = assert_refused(await own.get(f"/v1/sessions/{session['id']}"), 401)
            assert state in body["detail"]
            assert_refused(await send(own, session["id"], "add", n=1), 401)
    assert await contents(plane.store) == before


# --- every route ---------------------------------------------------------------------------


async def test_every_v1_route_checks_the_caller(plane: Plane, admin: httpx.AsyncClient) -> None:
    """A token of another session may do nothing anywhere: a route that answers it anything but
    403 does not declare the permission it needs."""
    other = (await open_session(admin))["id"]
    stranger = (await open_session(admin))["session_token"]
    values = {"session_id": other, "seq": "1", "message_id": "m", "dead_letter_id": "d"}
    values |= {"name": "calculator", "endpoint": "calculator"}
    paths = (await admin.get("/openapi.json")).json()["paths"]
    answers = {}
    before = await contents(plane.store)
    async with plane.client(stranger) as http:
        for template, operations in paths.items():
            if not template.startswith("/v1"):
                continue
            path = template.format(**values)
            for method in operations:
                response = await http.request(method, path, json={})
                answers[f"{method.upper()} {template}"] = response.status_code
    assert len(answers) >= 20
    assert {route: status for route, status in answers.items() if status != 403} == {}
    assert await contents(plane.store) == before
