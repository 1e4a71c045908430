"""The operator's dashboard at ``/ui/``: server-rendered pages (Jinja2) made live with htmx.

Pages call the same route functions as REST v1 (:mod:`api.routes`), so every rule has one
implementation; :mod:`api.ui.auth` signs visitors in and decides who may act. htmx is served
from ``/ui/static`` (see ``static/NOTICE``), so the dashboard needs no network beyond the
control plane.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.ui import dead_letters, endpoints, overview, sessions, signin
from api.ui.auth import Logins, SignInRequired
from api.ui.render import HERE


def _sign_in_first(request: Request, _: Exception) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": "/ui/login"})
    return RedirectResponse("/ui/login", status_code=303)


PAGE_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
"""Pages are never framed (no clickjacking), cached, or leaked in a Referer."""


class PageHeaders:
    """Add :data:`PAGE_HEADERS` and ``Server-Timing`` (the server's milliseconds) to pages."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/ui/") or path.startswith("/ui/static/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()))
                headers.extend(PAGE_HEADERS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, timed)


def install(app: FastAPI) -> None:
    """Serve the dashboard on ``app``."""
    app.state.ui_logins = Logins()
    app.add_middleware(PageHeaders)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    for module in (signin, overview, sessions, dead_letters, endpoints):
        app.include_router(module.router, prefix="/ui", include_in_schema=False)
    app.add_exception_handler(SignInRequired, _sign_in_first)
