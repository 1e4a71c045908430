"""The dashboard through the real application, without a browser: sign-in, CSRF, pages."""

from __future__ import annotations

import re
import statistics
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import utcnow
from durable_sessions.model.services import service_of
from durable_sessions.settings import Settings
from durable_sessions.store.sql import migrate
from durable_sessions.store.sql.store import SqlStore
from tests.api.bulk import store_sessions_async
from tests.api.test_api import KEY, Stack, open_calc, send
from tests.api.test_api import stack as stack  # noqa: PLC0414  (the fixture)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def browser(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client with no bearer key, as a browser is."""
    transport = httpx.ASGITransport(app=stack.app, client=("127.0.0.1", 50001))
    async with (
        stack.runtime,
        stack.app.router.lifespan_context(stack.app),
        stack.client,
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


async def sign_in(browser: httpx.AsyncClient, key: str = KEY) -> httpx.Response:
    form = await browser.get("/ui/login")
    token = CSRF.search(form.text)
    assert token is not None
    return await browser.post("/ui/login", data={"key": key, "csrf_token": token.group(1)})


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def test_pages_need_a_sign_in(browser: httpx.AsyncClient) -> None:
    for path in ("/ui/", "/ui/sessions", "/ui/dead-letters", "/ui/endpoints"):
        response = await browser.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/ui/login")
    polled = await browser.get("/ui/", headers={"HX-Request": "true"})
    assert polled.headers["HX-Redirect"] == "/ui/login"


async def test_signing_in_keeps_an_opaque_strict_cookie_and_signing_out_forgets_it(
    browser: httpx.AsyncClient,
) -> None:
    refused = await sign_in(browser, "not-the-key")
    assert refused.status_code == 401
    assert "that key is not valid" in refused.text
    assert "ds_ui=" not in refused.headers.get("set-cookie", "")
    forged = await browser.post("/ui/login", data={"key": KEY, "csrf_token": "guess"})
    assert forged.status_code == 403
    signed = await sign_in(browser)
    assert (signed.status_code, signed.headers["location"]) == (303, "/ui/")
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("ds_ui="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert KEY not in cookie
    overview = await browser.get("/ui/")
    assert overview.status_code == 200
    assert "Sessions by state" in overview.text
    assert overview.headers["Server-Timing"].startswith("app;dur=")
    assert overview.headers["X-Frame-Options"] == "DENY"
    assert overview.headers["Cache-Control"] == "no-store"
    again = await browser.get("/ui/login")
    assert (again.status_code, again.headers["location"]) == (303, "/ui/")
    no_token = await browser.post("/ui/logout")
    assert no_token.status_code == 403
    out = await browser.post("/ui/logout", data={"csrf_token": csrf_of(overview)})
    assert out.status_code == 303
    assert (await browser.get("/ui/")).status_code == 303


async def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(
    browser: httpx.AsyncClient, stack: Stack
) -> None:
    sid = (await open_calc(stack.client))["id"]
    await sign_in(browser)
    shown = await browser.get(f"/ui/sessions/{sid}")
    assert "Close" in shown.text
    for data in ({}, {"csrf_token": "forged"}):
        refused = await browser.post(f"/ui/sessions/{sid}/terminate", data=data)
        assert refused.status_code == 403
    assert (await stack.client.get(f"/v1/sessions/{sid}")).json()["state"] == "open"
    done = await browser.post(f"/ui/sessions/{sid}/close", data={"csrf_token": csrf_of(shown)})
    assert (done.status_code, done.headers["location"]) == (303, f"/ui/sessions/{sid}")
    after = await browser.get(f"/ui/sessions/{sid}")
    assert "close requested: the session is" in after.text
    assert (await stack.client.get(f"/v1/sessions/{sid}")).json()["state"] in ("closing", "closed")


async def test_sessions_page_filters_and_one_session_shows_its_timeline(
    browser: httpx.AsyncClient, stack: Stack
) -> None:
    sid = (await open_calc(stack.client, labels={"tenant": "acme"}))["id"]
    other = (await open_calc(stack.client))["id"]
    for op, args in (("clear", {}), ("add_to", {"n": 2})):
        assert (await send(stack.client, sid, op, **args)).status_code == 202
    await sign_in(browser)
    listed = await browser.get("/ui/sessions", params={"label": "tenant=acme"})
    assert sid in listed.text
    assert other not in listed.text
    region = await browser.get(
        "/ui/sessions", params={"state": "open"}, headers={"HX-Target": "sessions-live"}
    )
    assert region.text.lstrip().startswith('<div id="sessions-live"')
    bad = await browser.get("/ui/sessions", params={"label": "nokey"})
    assert "label filters look like key=value" in bad.text
    page = await browser.get(f"/ui/sessions/{sid}")
    assert "add_to" in page.text
    assert "Instance state" in page.text
    missing = await browser.get("/ui/sessions/no-such-session")
    assert missing.status_code == 404


async def test_a_reader_sees_no_action_and_a_forged_one_is_refused(
    browser: httpx.AsyncClient, stack: Stack
) -> None:
    created = await stack.client.post("/v1/keys", json={"name": "looker", "role": "reader"})
    reader_key = created.json()["key"]
    sender = await stack.client.post("/v1/keys", json={"name": "bot", "role": "sender"})
    refused = await sign_in(browser, sender.json()["key"])
    assert refused.status_code == 403
    assert "may not read every session" in refused.text
    sid = (await open_calc(stack.client))["id"]
    assert (await sign_in(browser, reader_key)).status_code == 303
    shown = await browser.get(f"/ui/sessions/{sid}")
    assert "key looker, reader (read only)" in shown.text
    for action in ("/close", "/terminate", "/resume"):
        assert f'action="/ui/sessions/{sid}{action}"' not in shown.text
    token = csrf_of(shown)
    forged = await browser.post(f"/ui/sessions/{sid}/terminate", data={"csrf_token": token})
    assert forged.status_code == 403
    assert (await stack.client.get(f"/v1/sessions/{sid}")).json()["state"] == "open"
    assert (await stack.client.delete("/v1/keys/looker")).status_code in (200, 204)
    assert (await browser.get(f"/ui/sessions/{sid}")).headers["location"] == "/ui/login"


@pytest.mark.postgres
async def test_the_sessions_page_over_100k_sessions_on_postgres(
    make_postgres_database: Callable[[], str], tmp_path: Path
) -> None:
    url = make_postgres_database()
    await migrate.upgrade(url)
    store = SqlStore.from_url(url)
    try:
        async with store.engine.begin() as db:
            await store_sessions_async(db, 100_000, utcnow())
        settings = Settings(api_keys=KEY, api_keys_file=str(tmp_path / "keys"))  # type: ignore[arg-type]
        app = create_app(
            settings,
            endpoints=[Endpoint.for_service(service_of(CalculatorService))],
            store=store,
            broker=MemoryNode().connect(),
        )
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            await sign_in(client)
            timings = {}
            for name, params in (
                ("all", {}),
                ("open", {"state": "open"}),
                ("label", {"label": "bulk=yes"}),
            ):
                pages = [await client.get("/ui/sessions", params=params) for _ in range(5)]
                assert pages[0].text.count("<tr data-session=") == 50, pages[0].text[-1500:]
                timings[name] = [float(p.headers["Server-Timing"].split("dur=")[1]) for p in pages]
    finally:
        await store.close()
    for name, values in timings.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"\nPostgreSQL, /ui/sessions first page ({name}): server ms {shown}")
    for name, values in timings.items():
        assert statistics.median(values) < 200.0, (name, values)
