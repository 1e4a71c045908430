"""``/ui/endpoints``: the endpoints served, and resuming a faulted datagram listener."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import Plane
from api.routes import listeners as rest
from api.schemas import Resume
from api.ui.auth import Acting, SignedIn
from api.ui.render import live, page
from durable_sessions.engine.control import ResumeAction
from durable_sessions.errors import DurableSessionsError

router = APIRouter()


@router.get("/endpoints")
async def endpoints(request: Request, login: SignedIn, plane: Plane) -> HTMLResponse:
    """Every endpoint, with its datagram listener open or faulted."""
    context = {
        "endpoints": await rest.list_endpoints(plane),
        "actions": [a.value for a in ResumeAction],
    }
    name = "_endpoints_table.html" if live(request, "endpoints-live") else "endpoints.html"
    return page(request, login, name, context)


@router.post("/endpoints/{name}/resume")
async def resume(
    name: str,
    login: Acting,
    plane: Plane,
    action: Annotated[str, Form(max_length=20)] = "",
) -> RedirectResponse:
    """Resume a faulted datagram listener: retry the datagram it stopped at, or skip it."""
    if action not in ResumeAction.__members__.values():
        login.flash = ("error", f"resume with retry or skip, not {action!r}")
    else:
        try:
            done = await rest.resume(name, Resume(action=ResumeAction(action)), plane)
        except DurableSessionsError as e:
            login.flash = ("error", str(e))
        else:
            login.flash = (
                "ok",
                f"the listener of {name} is open again; datagram {done.message_id} is "
                f"{done.status or 'gone'}",
            )
    return RedirectResponse("/ui/endpoints", status_code=303)
