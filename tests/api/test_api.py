"""REST v1 through the real application: every route and every error it promises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.hosting.testing import FAST_POISON
from durable_sessions.model.contracts import SessionMode, contract, operation
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import DeadLetterReason, DeadLetterRecord, utcnow
from durable_sessions.model.services import service, service_of
from durable_sessions.settings import Settings
from durable_sessions.store.memory import MemoryStore
from tests.modes import TallyService

KEY = "test-key-123"
PROBLEM = "application/problem+json"


@contract(session_mode=SessionMode.NOT_ALLOWED)
class Notes(Protocol):
    @operation
    async def note(self, text: str) -> None: ...


@service(Notes)
class NotesService:
    async def note(self, text: str) -> None:
        return None


@contract(session_mode=SessionMode.NOT_ALLOWED)
class Ledger(Protocol):
    @operation
    async def record(self, n: int) -> None: ...


@service(Ledger)
class LedgerService:
    async def record(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"cannot record {n}")


@dataclass
class Stack:
    """The control plane and a runtime serving its endpoints, built but not started."""

    app: FastAPI
    client: httpx.AsyncClient
    runtime: Runtime


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    node, store = MemoryNode(), MemoryStore()
    served = [
        (
            Endpoint.for_service(service_of(CalculatorService), poison=FAST_POISON),
            service_of(CalculatorService),
        ),
        (Endpoint.for_service(service_of(NotesService)), service_of(NotesService)),
        (Endpoint.for_service(service_of(TallyService)), service_of(TallyService)),
        (
            Endpoint.for_service(service_of(LedgerService), poison=FAST_POISON),
            service_of(LedgerService),
        ),
    ]
    runtime = Runtime(
        store, node.connect(), served, sweep_interval_s=0.02, relay_poll_interval_s=0.02
    )
    settings = Settings(api_keys=KEY, api_keys_file=str(tmp_path / "keys"))  # type: ignore[arg-type]
    app = create_app(settings, endpoints=[e for e, _ in served], store=store, broker=node.connect())
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    client = httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {KEY}"}
    )
    return Stack(app, client, runtime)


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.runtime, stack.app.router.lifespan_context(stack.app), stack.client:
        yield stack.client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:durable-sessions:problem:{slug}"
    assert body["status"] == status
    assert body["detail"]
    return body


async def open_calc(http: httpx.AsyncClient, **extra: object) -> dict[str, Any]:
    response = await http.post("/v1/sessions", json={"contract": "Calculator", **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def send(http: httpx.AsyncClient, sid: str, operation: str, **args: object) -> httpx.Response:
    return await http.post(
        f"/v1/sessions/{sid}/messages", json={"operation": operation, "args": args}
    )


# --- auth -----------------------------------------------------------------------------------


async def test_v1_needs_a_valid_bearer_key(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/sessions", headers={"Authorization": ""})
    body = assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in body["detail"]
    assert_problem(
        await http.get("/v1/contracts", headers={"Authorization": "Bearer nope"}),
        401,
        "unauthorized",
    )
    assert_problem(
        await http.get("/v1/contracts", headers={"Authorization": f"Basic {KEY}"}),
        401,
        "unauthorized",
    )


async def test_probes_are_open_on_loopback_only(http: httpx.AsyncClient, tmp_path: Path) -> None:
    assert (await http.get("/healthz", headers={"Authorization": ""})).json() == {"status": "ok"}
    ready = await http.get("/readyz", headers={"Authorization": ""})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
    app = http._transport.app  # type: ignore[attr-defined]
    remote = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 4000)), base_url="http://test"
    )
    async with remote:
        assert_problem(await remote.get("/metrics"), 401, "unauthorized")
        allowed = await remote.get("/healthz", headers={"Authorization": f"Bearer {KEY}"})
        assert allowed.status_code == 200


def test_the_control_plane_refuses_to_run_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs an API key"):
        create_app(Settings(api_keys="", api_keys_file=str(tmp_path / "none")), endpoints=[])  # type: ignore[arg-type]


# --- sessions -------------------------------------------------------------------------------


async def test_open_session(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/sessions",
        json={
            "contract": "Calculator",
            "labels": {"tenant": "acme"},
            "inactivity_timeout_s": 30,
            "ttl_s": 60,
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/sessions/{body['id']}"
    assert (body["state"], body["contract"], body["endpoint"]) == (
        "open",
        "Calculator",
        "calculator",
    )
    assert body["labels"] == {"tenant": "acme"}
    assert (body["inactivity_timeout_s"], body["ttl_s"]) == (30, 60)
    assert body["counters"] == {"sent": 0, "applied": 0, "parked": 0, "duplicates": 0, "dead": 0}
    assert body["fault"] is None


@pytest.mark.parametrize(
    ("payload", "slug"),
    [
        ({"contract": "Abacus"}, "unknown-contract"),
        ({"contract": "Calculator", "endpoint": "elsewhere"}, "unknown-contract"),
        ({"contract": "Notes"}, "sessions-not-allowed"),
        ({}, "invalid-request"),
        ({"contract": "Calculator", "colour": "red"}, "invalid-request"),
        ({"contract": "Calculator", "ttl_s": -1}, "invalid-request"),
        (
            {"contract": "Calculator", "labels": {f"k{i}": "v" for i in range(21)}},
            "invalid-request",
        ),
    ],
)
async def test_open_session_errors(
    http: httpx.AsyncClient, payload: dict[str, Any], slug: str
) -> None:
    assert_problem(await http.post("/v1/sessions", json=payload), 422, slug)


async def test_show_session_and_unknown_id(http: httpx.AsyncClient) -> None:
    opened = await open_calc(http)
    shown = await http.get(f"/v1/sessions/{opened['id']}")
    assert shown.json()["id"] == opened["id"]
    assert_problem(await http.get("/v1/sessions/nope"), 404, "session-not-found")


async def test_list_filters_and_pages(http: httpx.AsyncClient) -> None:
    made = [await open_calc(http, labels={"batch": "a" if i % 2 else "b"}) for i in range(7)]
    await http.post(f"/v1/sessions/{made[0]['id']}/terminate", json={"reason": "test"})
    page = (await http.get("/v1/sessions", params={"limit": 3})).json()
    assert [s["id"] for s in page["items"]] == [s["id"] for s in made[:3]]
    assert page["items"][0]["instance_state"] is None
    rest = (
        await http.get("/v1/sessions", params={"limit": 10, "cursor": page["next_cursor"]})
    ).json()
    assert [s["id"] for s in rest["items"]] == [s["id"] for s in made[3:]]
    assert rest["next_cursor"] is None
    labelled = (await http.get("/v1/sessions", params={"label": "batch=a"})).json()["items"]
    assert {s["id"] for s in labelled} == {made[i]["id"] for i in (1, 3, 5)}
    terminated = (await http.get("/v1/sessions", params={"state": "terminated"})).json()["items"]
    assert [s["id"] for s in terminated] == [made[0]["id"]]
    by_contract = (await http.get("/v1/sessions", params={"contract": "Notes"})).json()["items"]
    assert by_contract == []
    assert_problem(await http.get("/v1/sessions", params={"cursor": "!!"}), 422, "invalid-request")
    assert_problem(await http.get("/v1/sessions", params={"limit": 0}), 422, "invalid-request")
    assert_problem(
        await http.get("/v1/sessions", params={"state": "sleepy"}), 422, "invalid-request"
    )
    assert_problem(
        await http.get("/v1/sessions", params={"label": "nokey"}), 422, "invalid-request"
    )


async def test_list_filters_by_endpoint_and_creation_time(http: httpx.AsyncClient) -> None:
    made = [await open_calc(http) for _ in range(3)]
    ids = [s["id"] for s in made]
    on_calc = (await http.get("/v1/sessions", params={"endpoint": "calculator"})).json()
    assert [s["id"] for s in on_calc["items"]] == ids
    elsewhere = (await http.get("/v1/sessions", params={"endpoint": "tally"})).json()
    assert elsewhere["items"] == []
    since = {"created_after": made[1]["created_at"]}
    assert [s["id"] for s in (await http.get("/v1/sessions", params=since)).json()["items"]] == (
        ids[1:]
    )
    newest = (await http.get("/v1/sessions", params={"order": "newest", "limit": 2})).json()
    assert [s["id"] for s in newest["items"]] == ids[::-1][:2]
    rest = {"order": "newest", "cursor": newest["next_cursor"]}
    assert [s["id"] for s in (await http.get("/v1/sessions", params=rest)).json()["items"]] == (
        ids[:1]
    )
    naive = {"created_before": made[1]["created_at"].removesuffix("Z")}
    assert [s["id"] for s in (await http.get("/v1/sessions", params=naive)).json()["items"]] == (
        ids[:1]
    )


# --- messages -------------------------------------------------------------------------------


async def test_a_calculator_session_over_rest(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]
    accepted = [
        (await send(http, sid, "clear")).json(),
        (await send(http, sid, "add_to", n=5)).json(),
        (await send(http, sid, "multiply_by", n=4)).json(),
        (await send(http, sid, "equals")).json(),
    ]
    assert [a["seq"] for a in accepted] == [1, 2, 3, 4]
    assert all(a["status"] == "pending" for a in accepted)
    result = (await http.get(f"/v1/sessions/{sid}/messages/4", params={"wait": 10})).json()
    assert (result["status"], result["result"], result["operation"]) == ("applied", 20.0, "equals")
    same = (await http.get(f"/v1/messages/{result['message_id']}")).json()
    assert same == result
    session = (await http.get(f"/v1/sessions/{sid}")).json()
    assert session["state"] == "closed"
    assert session["instance_state"] == {"result": 20.0}
    assert session["counters"]["applied"] == 4
    listed = (
        await http.get(f"/v1/sessions/{sid}/messages", params={"status": "applied", "limit": 2})
    ).json()
    assert [m["seq"] for m in listed["items"]] == [1, 2]
    rest = (
        await http.get(f"/v1/sessions/{sid}/messages", params={"cursor": listed["next_cursor"]})
    ).json()
    assert [m["seq"] for m in rest["items"]] == [3, 4]
    assert_problem(await http.get(f"/v1/sessions/{sid}/messages/9"), 404, "message-not-found")
    assert_problem(await http.get("/v1/messages/none"), 404, "message-not-found")


async def test_same_message_id_gives_the_original_answer(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]
    first = await http.post(
        f"/v1/sessions/{sid}/messages", json={"operation": "clear", "message_id": "m-1"}
    )
    again = await http.post(
        f"/v1/sessions/{sid}/messages", json={"operation": "clear", "message_id": "m-1"}
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["seq"] == first.json()["seq"] == 1
    assert (await http.get(f"/v1/sessions/{sid}")).json()["last_sent_seq"] == 1
    other = (await open_calc(http))["id"]
    clash = await http.post(
        f"/v1/sessions/{other}/messages", json={"operation": "clear", "message_id": "m-1"}
    )
    assert_problem(clash, 409, "message-id-conflict")


async def test_send_errors(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]
    assert_problem(await send(http, sid, "sqrt"), 422, "unknown-operation")
    bad = assert_problem(await send(http, sid, "clear", n=1), 422, "invalid-arguments")
    assert bad["errors"][0]["loc"] == ["n"]
    first = assert_problem(await send(http, sid, "add_to", n=1), 422, "not-initiating")
    assert "start the session with one of: clear" in first["detail"]
    assert_problem(await send(http, "missing", "clear"), 404, "session-not-found")
    assert_problem(
        await http.post(f"/v1/sessions/{sid}/messages", json={"args": {}}), 422, "invalid-request"
    )
    await send(http, sid, "clear")
    await send(http, sid, "equals")
    assert_problem(await send(http, sid, "add_to", n=1), 409, "terminating-operation-called")
    await http.get(f"/v1/sessions/{sid}/messages/2", params={"wait": 10})
    assert (await http.get(f"/v1/sessions/{sid}")).json()["state"] == "closed"
    # Closed by its terminating operation, the session still gives that reason, as WCF does.
    assert_problem(await send(http, sid, "add_to", n=1), 409, "terminating-operation-called")
    closed = (await open_calc(http))["id"]
    await http.post(f"/v1/sessions/{closed}/close")
    refused = assert_problem(await send(http, closed, "clear"), 409, "session-not-open")
    assert refused["state"] == "closed"


async def test_numbers_json_cannot_carry_are_refused_and_overflow_reads_back(
    http: httpx.AsyncClient,
) -> None:
    sid = (await open_calc(http))["id"]
    await send(http, sid, "clear")
    for n in ('"NaN"', '"Infinity"', "1e400", "-1e400", "NaN"):
        body = f'{{"operation": "add_to", "args": {{"n": {n}}}}}'
        refused = await http.post(
            f"/v1/sessions/{sid}/messages",
            content=body,
            headers={"content-type": "application/json"},
        )
        problem = assert_problem(refused, 422, "invalid-arguments")
        assert [e["loc"] for e in problem["errors"]] == [["n"]], n
        assert "n: Input should be a finite number" in problem["detail"]
    assert (await http.get(f"/v1/sessions/{sid}")).json()["last_sent_seq"] == 1
    await send(http, sid, "add_to", n=1e308)
    await send(http, sid, "multiply_by", n=10)
    await send(http, sid, "equals")
    result = (await http.get(f"/v1/sessions/{sid}/messages/4", params={"wait": 10})).json()
    assert (result["status"], result["result"]) == ("applied", "Infinity")
    session = (await http.get(f"/v1/sessions/{sid}")).json()
    assert session["instance_state"] == {"result": "Infinity"}


async def test_oversize_bodies_are_refused(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]
    huge = {"operation": "clear", "args": {"pad": "x" * (1 << 20)}}
    assert_problem(await http.post(f"/v1/sessions/{sid}/messages", json=huge), 413, "too-large")
    assert (await http.get(f"/v1/sessions/{sid}")).json()["last_sent_seq"] == 0


async def test_datagrams(http: httpx.AsyncClient) -> None:
    sent = await http.post(
        "/v1/datagrams", json={"contract": "Notes", "operation": "note", "args": {"text": "hi"}}
    )
    assert sent.status_code == 202
    done = (await http.get(f"/v1/messages/{sent.json()['message_id']}", params={"wait": 10})).json()
    assert (done["status"], done["session_id"], done["seq"]) == ("applied", None, None)
    refused = assert_problem(
        await http.post("/v1/datagrams", json={"contract": "Calculator", "operation": "clear"}),
        422,
        "invalid-request",
    )
    assert refused["detail"] == (
        "contract 'Calculator' requires sessions (SessionMode.REQUIRED): open a session on "
        "endpoint 'calculator' to call 'clear'"
    )
    refused = assert_problem(
        await http.post("/v1/sessions", json={"contract": "Notes"}), 422, "sessions-not-allowed"
    )
    assert refused["detail"] == (
        "contract 'Notes' does not allow sessions (SessionMode.NOT_ALLOWED): send datagrams to "
        "endpoint 'notes' instead"
    )


async def test_an_allowed_contract_takes_sessions_and_datagrams(http: httpx.AsyncClient) -> None:
    opened = await http.post("/v1/sessions", json={"contract": "Tally"})
    assert opened.status_code == 201, opened.text
    sid = opened.json()["id"]
    await send(http, sid, "add", n=2)
    await send(http, sid, "add", n=3)
    assert (await send(http, sid, "total")).json()["seq"] == 3
    total = (await http.get(f"/v1/sessions/{sid}/messages/3", params={"wait": 10})).json()
    assert (total["status"], total["result"]) == ("applied", 5)
    sent = await http.post(
        "/v1/datagrams", json={"contract": "Tally", "operation": "add", "args": {"n": 7}}
    )
    assert sent.status_code == 202, sent.text
    done = (await http.get(f"/v1/messages/{sent.json()['message_id']}", params={"wait": 10})).json()
    assert (done["status"], done["session_id"], done["seq"]) == ("applied", None, None)


# --- close, terminate, resume, dead letters --------------------------------------------------


async def test_close_applies_pending_then_closes(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]
    await send(http, sid, "clear")
    await send(http, sid, "add_to", n=2)
    closing = await http.post(f"/v1/sessions/{sid}/close")
    assert closing.status_code == 202
    assert closing.json()["state"] in {"closing", "closed"}
    for _ in range(200):
        if (await http.get(f"/v1/sessions/{sid}")).json()["state"] == "closed":
            break
        await asyncio.sleep(0.02)
    session = (await http.get(f"/v1/sessions/{sid}")).json()
    assert (session["state"], session["instance_state"]) == ("closed", {"result": 2.0})
    assert (await http.post(f"/v1/sessions/{sid}/close")).status_code == 202


async def test_terminate_dead_letters_pending_and_replay(stack: Stack) -> None:
    http = stack.client
    async with stack.app.router.lifespan_context(stack.app), http:
        sid = (await open_calc(http))["id"]
        calls = [
            ("clear", {}),
            ("add_to", {"n": 2}),
            ("multiply_by", {"n": 10}),
            ("add_to", {"n": 1}),
        ]
        for name, args in calls:
            assert (await send(http, sid, name, **args)).status_code == 202
        # No worker runs yet: all four are pending when the session is terminated.
        terminated = await http.post(
            f"/v1/sessions/{sid}/terminate", json={"reason": "operator said so"}
        )
        assert terminated.status_code == 200
        assert (terminated.json()["state"], terminated.json()["end_reason"]) == (
            "terminated",
            "operator said so",
        )
        assert_problem(await http.post(f"/v1/sessions/{sid}/terminate"), 409, "illegal-transition")
        assert_problem(
            await http.post(f"/v1/sessions/{sid}/terminate", json={"reason": ""}),
            422,
            "invalid-request",
        )
        assert_problem(await http.post("/v1/sessions/nope/close"), 404, "session-not-found")
        letters = (await http.get("/v1/dead-letters", params={"session_id": sid})).json()["items"]
        assert sorted((d["seq"], d["operation"], d["reason"]) for d in letters) == [
            (seq, name, "terminated") for seq, (name, _) in enumerate(calls, 1)
        ]

        # Named in any order, they are carried by a new session in their original order.
        ids = [d["id"] for d in sorted(letters, key=lambda d: -d["seq"])]
        replayed = await http.post("/v1/dead-letters/replay", json={"ids": ids})
        assert replayed.status_code == 202, replayed.text
        body = replayed.json()
        assert (body["into"], [m["seq"] for m in body["messages"]]) == ("new_session", [1, 2, 3, 4])
        new_sid = body["session_id"]
        async with stack.runtime:
            await http.get(f"/v1/sessions/{new_sid}/messages/4", params={"wait": 10})
        again = (await http.get(f"/v1/sessions/{new_sid}")).json()
        assert (again["instance_state"], again["labels"]) == ({"result": 21.0}, {"replay-of": sid})
        assert (await http.get(f"/v1/sessions/{sid}")).json()["state"] == "terminated"
        shown = (await http.get("/v1/dead-letters", params={"session_id": sid})).json()["items"]
        assert {d["replay_message_id"] for d in shown} == {
            m["message_id"] for m in body["messages"]
        }
        assert_problem(
            await http.post("/v1/dead-letters/replay", json={"session_id": sid}),
            409,
            "replay-refused",
        )
        assert_problem(
            await http.post("/v1/dead-letters/replay", json={"ids": ids}), 409, "replay-refused"
        )


async def test_fault_resume_skip_retry_and_dead_letters(stack: Stack) -> None:
    http = stack.client
    async with stack.app.router.lifespan_context(stack.app), http:
        sid = (await open_calc(http))["id"]
        # All four are queued before a worker runs: the third must not fault the session
        # before the fourth is accepted.
        for name, args in [
            ("clear", {}),
            ("add_to", {"n": 9}),
            ("divide_by", {"n": 0}),
            ("add_to", {"n": 1}),
        ]:
            assert (await send(http, sid, name, **args)).status_code == 202
        async with stack.runtime:
            await _fault_resume_skip_retry_and_dead_letters(http, sid)


async def _fault_resume_skip_retry_and_dead_letters(http: httpx.AsyncClient, sid: str) -> None:
    poisoned = (await http.get(f"/v1/sessions/{sid}/messages/3", params={"wait": 10})).json()
    assert poisoned["status"] == "failed"
    assert poisoned["error"] == "ZeroDivisionError: float division by zero"
    session = (await http.get(f"/v1/sessions/{sid}")).json()
    assert session["state"] == "faulted"
    assert session["fault"] == {"seq": 3, "reason": "ZeroDivisionError: float division by zero"}
    assert_problem(await send(http, sid, "add_to", n=1), 409, "session-not-open")
    assert_problem(
        await http.post(f"/v1/sessions/{sid}/resume", json={"action": "later"}),
        422,
        "invalid-request",
    )

    retried = await http.post(f"/v1/sessions/{sid}/resume", json={"action": "retry"})
    assert retried.json()["state"] == "open"
    # Only a faulted session resumes (this one may fault again at any moment: ask another).
    idle = (await open_calc(http))["id"]
    assert_problem(
        await http.post(f"/v1/sessions/{idle}/resume", json={"action": "retry"}),
        409,
        "illegal-transition",
    )
    again = (await http.get(f"/v1/sessions/{sid}/messages/3", params={"wait": 10})).json()
    assert again["status"] == "failed"

    skipped = await http.post(f"/v1/sessions/{sid}/resume", json={"action": "skip"})
    assert skipped.json()["state"] == "open"
    assert (await send(http, sid, "equals")).status_code == 202
    result = (await http.get(f"/v1/sessions/{sid}/messages/5", params={"wait": 10})).json()
    assert result["result"] == 10.0

    letters = (await http.get("/v1/dead-letters", params={"session_id": sid})).json()["items"]
    assert [(d["seq"], d["reason"]) for d in letters] == [(3, "skipped")]
    assert (await http.get("/v1/dead-letters", params={"reason": "expired"})).json()["items"] == []
    shown = (await http.get(f"/v1/dead-letters/{letters[0]['id']}")).json()
    assert shown["args"] == {"n": 0.0}
    assert_problem(await http.get("/v1/dead-letters/none"), 404, "dead-letter-not-found")
    assert_problem(
        await http.post(f"/v1/dead-letters/{letters[0]['id']}/replay"), 409, "replay-refused"
    )


async def test_a_dead_letter_is_never_replayed_out_of_its_place(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]
    await send(http, sid, "clear")
    await send(http, sid, "divide_by", n=0)
    await http.get(f"/v1/sessions/{sid}/messages/2", params={"wait": 10})
    await http.post(f"/v1/sessions/{sid}/resume", json={"action": "skip"})
    letter = (await http.get("/v1/dead-letters", params={"session_id": sid})).json()["items"][0]
    before = (await http.get("/v1/sessions")).json()["items"]

    # Appended to its session it would follow later messages; alone it cannot start a new one.
    alone = assert_problem(
        await http.post(f"/v1/dead-letters/{letter['id']}/replay"), 409, "replay-refused"
    )
    assert "cannot be the first operation" in alone["detail"]
    as_datagram = assert_problem(
        await http.post(f"/v1/dead-letters/{letter['id']}/replay", json={"into": "datagrams"}),
        409,
        "replay-refused",
    )
    assert (
        "does not accept datagrams" in as_datagram["detail"]
        or "open a session" in as_datagram["detail"]
    )
    assert (await http.get("/v1/sessions")).json()["items"] == before
    assert (await http.get(f"/v1/dead-letters/{letter['id']}")).json()["replayed_at"] is None
    assert_problem(await http.post("/v1/dead-letters/none/replay"), 404, "dead-letter-not-found")
    assert_problem(
        await http.post("/v1/dead-letters/replay", json={"ids": [letter["id"]], "session_id": sid}),
        422,
        "invalid-request",
    )


async def test_dead_letters_of_two_sessions_are_not_mixed(stack: Stack) -> None:
    http = stack.client
    async with stack.app.router.lifespan_context(stack.app), http:
        ids = []
        for _ in range(2):
            sid = (await open_calc(http))["id"]
            await send(http, sid, "clear")
            await http.post(f"/v1/sessions/{sid}/terminate")
            ids += [
                d["id"]
                for d in (await http.get("/v1/dead-letters", params={"session_id": sid})).json()[
                    "items"
                ]
            ]
        mixed = assert_problem(
            await http.post("/v1/dead-letters/replay", json={"ids": ids}), 409, "replay-refused"
        )
        assert "several sessions" in mixed["detail"]


async def test_a_datagram_dead_letter_is_replayed_as_a_datagram(stack: Stack) -> None:
    http = stack.client
    letter = DeadLetterRecord(
        id="d-1",
        message_id="m-1",
        endpoint="notes",
        contract="Notes",
        operation="note",
        args={"text": "again"},
        reason=DeadLetterReason.POISON,
        created_at=utcnow(),
    )
    async with stack.app.router.lifespan_context(stack.app), http:
        async with stack.app.state.plane.store.transaction() as uow:
            await uow.dead_letters.add(letter)
        refused = assert_problem(
            await http.post("/v1/dead-letters/d-1/replay", json={"into": "new_session"}),
            409,
            "replay-refused",
        )
        assert "was a datagram" in refused["detail"]
        replayed = await http.post("/v1/dead-letters/d-1/replay")
        assert replayed.status_code == 202, replayed.text
        assert (replayed.json()["into"], replayed.json()["session_id"]) == ("datagrams", None)
        (message,) = replayed.json()["messages"]
        assert (message["seq"], message["message_id"]) == (None, "replay-d-1")


async def test_a_faulted_datagram_listener_is_shown_and_resumed(http: httpx.AsyncClient) -> None:
    async def record(n: int) -> str:
        sent = await http.post(
            "/v1/datagrams", json={"contract": "Ledger", "operation": "record", "args": {"n": n}}
        )
        assert sent.status_code == 202, sent.text
        message_id: str = sent.json()["message_id"]
        return message_id

    listed = {e["name"]: e for e in (await http.get("/v1/endpoints")).json()}
    assert (listed["ledger"]["datagram_listener"], listed["calculator"]["datagram_listener"]) == (
        "open",
        None,
    )
    poison = await record(-1)
    failed = (await http.get(f"/v1/messages/{poison}", params={"wait": 10})).json()
    assert (failed["status"], failed["error"]) == ("failed", "ValueError: cannot record -1")
    shown = (await http.get("/v1/endpoints/ledger")).json()
    assert shown["datagram_listener"] == "faulted"
    assert (shown["fault"]["message_id"], shown["fault"]["reason"]) == (
        poison,
        "ValueError: cannot record -1",
    )
    waiting = await record(1)
    await asyncio.sleep(0.3)
    assert (await http.get(f"/v1/messages/{waiting}")).json()["status"] == "pending"

    assert_problem(
        await http.post("/v1/endpoints/ledger/resume", json={"action": "later"}),
        422,
        "invalid-request",
    )
    resumed = await http.post("/v1/endpoints/ledger/resume", json={"action": "skip"})
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["message_id"], resumed.json()["status"]) == (poison, "dead")
    applied = (await http.get(f"/v1/messages/{waiting}", params={"wait": 10})).json()
    assert applied["status"] == "applied"
    assert (await http.get("/v1/endpoints/ledger")).json()["fault"] is None
    letters = (await http.get("/v1/dead-letters", params={"reason": "skipped"})).json()["items"]
    assert [d["message_id"] for d in letters] == [poison]
    assert_problem(
        await http.post("/v1/endpoints/ledger/resume", json={"action": "retry"}),
        409,
        "listener-not-faulted",
    )
    assert_problem(await http.get("/v1/endpoints/nope"), 404, "endpoint-not-found")


# --- contracts, metrics -------------------------------------------------------------------


async def test_contracts_describe_operations(http: httpx.AsyncClient) -> None:
    listed = {c["name"]: c for c in (await http.get("/v1/contracts")).json()}
    calc = listed["Calculator"]
    assert (calc["session_mode"], calc["endpoint"], calc["binding"]) == (
        "required",
        "calculator",
        "queued-session",
    )
    ops = {o["name"]: o for o in calc["operations"]}
    assert (ops["equals"]["terminating"], ops["equals"]["one_way"]) == (True, False)
    assert ops["add_to"]["arguments"]["properties"]["n"]["type"] == "number"
    assert listed["Notes"]["binding"] == "datagram"


async def test_metrics(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]
    await send(http, sid, "clear")
    text = (await http.get("/metrics")).text
    assert 'ds_sessions{state="open"} 1.0' in text
    assert 'ds_messages_sent_total{endpoint="calculator"} 1.0' in text
    assert "ds_outbox_pending" in text
    assert "ds_outbox_lag_seconds" in text


async def test_openapi_documents_every_route(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert {
        "/v1/sessions",
        "/v1/sessions/{session_id}/resume",
        "/v1/dead-letters/{dead_letter_id}/replay",
        "/v1/dead-letters/replay",
        "/v1/endpoints/{name}/resume",
    } <= set(spec["paths"])


async def test_oversize_streamed_bodies_are_refused(http: httpx.AsyncClient) -> None:
    sid = (await open_calc(http))["id"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"operation": "clear", "args": {"pad": "'
        for _ in range(64):
            yield b"x" * (1 << 15)
        yield b'"}}'

    refused = await http.post(f"/v1/sessions/{sid}/messages", content=chunks())
    assert "content-length" not in refused.request.headers
    assert_problem(refused, 413, "too-large")
    assert (await http.get(f"/v1/sessions/{sid}")).json()["last_sent_seq"] == 0
