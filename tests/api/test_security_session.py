"""The security session through the real application: signed sends, and every refusal.

Each refusal is checked to have changed nothing in the store: sessions (watermarks, counters),
their messages, dead letters and the outbox are read before and after. Keys and signatures are
computed here by hand, as docs/security.md defines them, so a client in any language can
follow the same steps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from pydantic import BaseModel

from api.app import create_app
from durable_sessions import SessionMode, contract, operation, service
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.services import service_of
from durable_sessions.settings import Settings
from durable_sessions.store.memory import MemoryStore
from durable_sessions.wsrm.messages import Fault, RMVersion
from durable_sessions.wsrm.xml import codec
from tests.api.test_access import ADMIN, PROBLEM, Plane, contents
from tests.reliable import documents as doc
from tests.reliable.conftest import SOAP

SECRET = "server-secret-for-tests"


@contract(session_mode=SessionMode.REQUIRED, security="message")
class Vault(Protocol):
    @operation
    async def deposit(self, amount: int) -> None: ...

    @operation(initiating=False)
    async def total(self) -> int: ...


@service(Vault)
class VaultService(BaseModel):
    held: int = 0

    async def deposit(self, amount: int) -> None:
        self.held += amount

    async def total(self) -> int:
        return self.held


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    node, store = MemoryNode(), MemoryStore()
    served = [
        (Endpoint.for_service(service_of(s)), service_of(s))
        for s in (VaultService, CalculatorService)
    ]
    runtime = Runtime(
        store, node.connect(), served, sweep_interval_s=0.02, relay_poll_interval_s=0.02
    )
    settings = Settings(
        api_keys=ADMIN,  # type: ignore[arg-type]
        api_keys_file=str(tmp_path / "keys"),
        session_secret=SECRET,  # type: ignore[arg-type]
    )
    app = create_app(settings, endpoints=[e for e, _ in served], store=store, broker=node.connect())
    async with runtime, app.router.lifespan_context(app):
        yield Plane(app, store, runtime)


@pytest.fixture
async def admin(plane: Plane) -> AsyncIterator[httpx.AsyncClient]:
    async with plane.client(ADMIN) as http:
        yield http


async def open_vault(http: httpx.AsyncClient) -> dict[str, Any]:
    opened = await http.post("/v1/sessions", json={"contract": "Vault"})
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    return body


def key_of(opened: dict[str, Any]) -> bytes:
    key: str | None = opened.get("session_key")
    assert key is not None, opened
    return base64.b64decode(key)


def session_key(secret: bytes, sid: str) -> bytes:
    """HKDF-SHA256 (RFC 5869) with no salt, info ``durable-sessions session key v1|<id>``."""
    prk = hmac.new(bytes(32), secret, hashlib.sha256).digest()
    info = b"durable-sessions session key v1|" + sid.encode()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def header(
    key: bytes,
    sid: str,
    mid: str,
    operation: str = "deposit",
    args: dict[str, Any] | None = None,
    *,
    at: float | None = None,
    nonce: str | None = None,
) -> str:
    given = {"amount": 5} if args is None else args
    t = int(time.time() if at is None else at)
    n = nonce or secrets.token_urlsafe(18)
    canonical = json.dumps(given, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    form = "\n".join(["DS-Signature-v1", sid, mid, operation, canonical, str(t), n])
    mac = hmac.new(key, form.encode(), hashlib.sha256).digest()
    return f"t={t},n={n},s={base64.b64encode(mac).decode()}"


async def post(
    http: httpx.AsyncClient,
    sid: str,
    signature: str | None,
    mid: str | None,
    operation: str = "deposit",
    args: dict[str, Any] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"operation": operation, "args": {"amount": 5} if args is None else args}
    if mid is not None:
        body["message_id"] = mid
    headers = {} if signature is None else {"DS-Signature": signature}
    return await http.post(f"/v1/sessions/{sid}/messages", json=body, headers=headers)


async def test_open_returns_the_session_key_derived_from_the_secret(
    admin: httpx.AsyncClient,
) -> None:
    opened = await open_vault(admin)
    assert key_of(opened) == session_key(SECRET.encode(), opened["id"])
    shown = (await admin.get(f"/v1/sessions/{opened['id']}")).json()
    assert "session_key" not in shown  # shown once, at open
    plain = await admin.post("/v1/sessions", json={"contract": "Calculator"})
    assert plain.json()["session_key"] is None


async def test_a_signed_session_runs_end_to_end(admin: httpx.AsyncClient) -> None:
    opened = await open_vault(admin)
    sid, key = opened["id"], key_of(opened)
    for amount in (5, 7):
        mid = str(uuid.uuid4())
        args = {"amount": amount}
        sent = await post(admin, sid, header(key, sid, mid, args=args), mid, args=args)
        assert sent.status_code == 202, sent.text
    mid = str(uuid.uuid4())
    sent = await post(admin, sid, header(key, sid, mid, "total", {}), mid, "total", {})
    assert sent.status_code == 202, sent.text
    seq = sent.json()["seq"]
    result = (await admin.get(f"/v1/sessions/{sid}/messages/{seq}", params={"wait": 10})).json()
    assert (result["status"], result["result"]) == ("applied", 12)


async def test_a_retry_signed_anew_is_the_same_message(admin: httpx.AsyncClient) -> None:
    opened = await open_vault(admin)
    sid, key, mid = opened["id"], key_of(opened), str(uuid.uuid4())
    first = await post(admin, sid, header(key, sid, mid), mid)
    again = await post(admin, sid, header(key, sid, mid), mid)
    assert first.status_code == again.status_code == 202
    assert (first.json()["seq"], again.json()["message_id"]) == (1, mid)
    assert again.json()["seq"] == 1


Forge = Callable[[bytes, str, str, bytes, str], tuple[str | None, str | None]]
"""Given (key, session id, message id, other session's key, other session's id): the
``DS-Signature`` and message id a refused send carries."""

REFUSALS: dict[str, tuple[Forge, str]] = {
    "missing": (lambda k, s, m, ok, os: (None, m), "missing"),
    "empty": (lambda k, s, m, ok, os: ("", m), "missing"),
    "malformed": (lambda k, s, m, ok, os: ("t=1,n=abc,s=xyz", m), "malformed"),
    "spaces": (lambda k, s, m, ok, os: (header(k, s, m).replace(",", ", "), m), "malformed"),
    "oversized": (lambda k, s, m, ok, os: ("t=1," + "n" * 5000, m), "malformed"),
    "bad mac": (
        lambda k, s, m, ok, os: (header(k, s, m)[:-44] + base64.b64encode(bytes(32)).decode(), m),
        "invalid",
    ),
    "stale t": (lambda k, s, m, ok, os: (header(k, s, m, at=time.time() - 301), m), "stale"),
    "future t": (lambda k, s, m, ok, os: (header(k, s, m, at=time.time() + 301), m), "stale"),
    "other session's key": (lambda k, s, m, ok, os: (header(ok, os, m), m), "invalid"),
    "signed for the other session": (lambda k, s, m, ok, os: (header(k, os, m), m), "invalid"),
    "tampered args": (
        lambda k, s, m, ok, os: (header(k, s, m, args={"amount": 500}), m),
        "invalid",
    ),
    "another message id": (lambda k, s, m, ok, os: (header(k, s, "other-id"), m), "invalid"),
    "another operation": (lambda k, s, m, ok, os: (header(k, s, m, "total", {}), m), "invalid"),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_refused_signature_stores_nothing(
    plane: Plane, admin: httpx.AsyncClient, case: str
) -> None:
    opened, other = await open_vault(admin), await open_vault(admin)
    sid, key = opened["id"], key_of(opened)
    mid = str(uuid.uuid4())
    assert (await post(admin, sid, header(key, sid, mid), mid)).status_code == 202
    before = await contents(plane.store)
    forge, kind = REFUSALS[case]
    signature, message_id = forge(key, sid, str(uuid.uuid4()), key_of(other), other["id"])
    refused = await post(admin, sid, signature, message_id)
    assert refused.status_code == 401, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.headers["www-authenticate"] == "DS-Signature"
    assert refused.json()["type"] == f"urn:durable-sessions:problem:signature-{kind}"
    assert await contents(plane.store) == before


async def test_a_replayed_nonce_is_refused_and_stores_nothing(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    opened = await open_vault(admin)
    sid, key, mid = opened["id"], key_of(opened), str(uuid.uuid4())
    signature = header(key, sid, mid)
    assert (await post(admin, sid, signature, mid)).status_code == 202
    before = await contents(plane.store)
    replayed = await post(admin, sid, signature, mid)
    assert replayed.status_code == 401, replayed.text
    assert replayed.json()["type"] == "urn:durable-sessions:problem:signature-replayed"
    # The same nonce on another message of the session is a replay too.
    other = str(uuid.uuid4())
    reused = await post(
        admin, sid, header(key, sid, other, nonce=signature.split(",")[1][2:]), other
    )
    assert reused.json()["type"] == "urn:durable-sessions:problem:signature-replayed"
    assert await contents(plane.store) == before


async def test_of_concurrent_replays_exactly_one_is_accepted(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    opened = await open_vault(admin)
    sid, key = opened["id"], key_of(opened)
    mid, nonce = str(uuid.uuid4()), "n" * 24
    # Different message ids, one nonce: only the nonce can stop the copies.
    answers = await asyncio.gather(
        *(
            post(admin, sid, header(key, sid, f"{mid}-{i}", nonce=nonce), f"{mid}-{i}")
            for i in range(8)
        )
    )
    assert sorted(a.status_code for a in answers) == [202] + [401] * 7
    stored = (await contents(plane.store))["messages"]
    assert [len(m) for m in stored] == [1]


async def test_a_signed_send_without_a_message_id_is_refused(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    opened = await open_vault(admin)
    sid, key = opened["id"], key_of(opened)
    before = await contents(plane.store)
    refused = await post(admin, sid, header(key, sid, ""), None)
    assert refused.status_code == 422, refused.text
    assert "message_id" in refused.json()["detail"]
    assert await contents(plane.store) == before


async def test_a_signed_endpoint_takes_no_datagram(plane: Plane, admin: httpx.AsyncClient) -> None:
    before = await contents(plane.store)
    refused = await admin.post(
        "/v1/datagrams", json={"contract": "Vault", "operation": "deposit", "args": {"amount": 1}}
    )
    assert refused.status_code == 422, refused.text
    assert "message security" in refused.json()["detail"]
    assert await contents(plane.store) == before


async def test_the_remote_client_signs_by_itself(plane: Plane) -> None:
    from durable_sessions.remote import RemoteClient

    transport = httpx.ASGITransport(app=plane.app, client=("127.0.0.1", 50000))
    http = httpx.AsyncClient(transport=transport, base_url="http://test")
    async with RemoteClient("http://test", ADMIN, http=http) as client:
        vault = await client.open("Vault")
        assert vault.key is not None
        await vault.send("deposit", {"amount": 3})
        await vault.send("deposit", {"amount": 4})
        sent = await vault.send("total")
        assert (await vault.message(sent["seq"], wait_s=10))["result"] == 7
        await vault.close()


async def test_soap_to_a_signed_endpoint_is_refused_and_stores_nothing(
    plane: Plane, admin: httpx.AsyncClient
) -> None:
    before = await contents(plane.store)
    document = doc.create_sequence(RMVersion.WSRM_1_1, "urn:offer:1", "urn:create:1")
    refused = await admin.post("/v1/soap/vault", content=document, headers={"content-type": SOAP})
    assert refused.status_code == 401, refused.text
    fault = codec.decode(refused.content).body
    assert isinstance(fault, Fault)
    assert "requires message security" in fault.reason
    assert await contents(plane.store) == before
