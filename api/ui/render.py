"""Rendering the dashboard's pages: the Jinja2 environment, its filters and the page helper.

Templates autoescape everything; instance state, arguments and results are shown as indented
JSON. A request made by htmx for one live region (``HX-Target``) gets only that region.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.ui.auth import CSRF_FIELD, Login, may_act
from durable_sessions.model.records import utcnow

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def duration(seconds: float) -> str:
    """``seconds`` as a short human duration: ``45s``, ``3m 12s``, ``2h 5m``, ``3d 4h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def ago(moment: datetime | None) -> str:
    """How long ago ``moment`` was, or an em dash."""
    if moment is None:
        return "\u2014"
    return duration((utcnow() - moment).total_seconds()) + " ago"


def when(moment: datetime | None) -> str:
    """``moment`` in ISO 8601 UTC to the second, or an em dash."""
    if moment is None:
        return "\u2014"
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def pretty(value: Any) -> str:
    """A JSON value, indented for reading."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


templates.env.filters.update(duration=duration, ago=ago, when=when, pretty=pretty)


def page(
    request: Request,
    login: Login | None,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render template ``name`` for a signed-in visitor (``login``) or the sign-in page."""
    flash = None
    polled = request.headers.get("hx-request") and not request.headers.get("hx-boosted")
    if login is not None and not polled:
        flash, login.flash = login.flash, None
    values = {
        "login": login,
        "csrf_field": CSRF_FIELD,
        "csrf": login.csrf if login else "",
        "can_act": login is not None and may_act(login.principal),
        "flash": flash,
        "path": request.url.path,
        **context,
    }
    return templates.TemplateResponse(request, name, values, status_code=status_code)


def live(request: Request, region: str) -> bool:
    """True when htmx asks for region ``region`` only (a poll)."""
    return request.headers.get("hx-target") == region


def not_found(request: Request, login: Login, title: str, detail: str) -> HTMLResponse:
    """A 404 page saying what is missing."""
    return page(request, login, "error.html", {"title": title, "detail": detail}, status_code=404)
