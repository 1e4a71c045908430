"""``/ui/sessions``: find sessions, look at one, and close, terminate or resume it.

Listing, showing and every action call the REST route functions of
:mod:`api.routes.sessions`; which actions a state offers is read off the lifecycle's table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import Plane
from api.routes import dead_letters as rest_dead_letters
from api.routes import sessions as rest
from api.schemas import Resume, SessionPage, Terminate
from api.ui.auth import Acting, Login, SignedIn
from api.ui.render import live, not_found, page
from durable_sessions.engine.control import ResumeAction
from durable_sessions.errors import ConfigurationError, DurableSessionsError, SessionNotFound
from durable_sessions.model.lifecycle import TRANSITIONS, SessionEvent, SessionState
from durable_sessions.store.base import SessionOrder

router = APIRouter()
PAGE_SIZE = 50
TIMELINE_SIZE = 200
Text = Annotated[str, Form(max_length=1000)]


def _moment(value: str, name: str) -> datetime | None:
    """A ``datetime-local`` field's value (taken as UTC), or None when empty."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{name} {value!r} is not a date and time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.get("/sessions")
async def sessions(
    request: Request,
    login: SignedIn,
    plane: Plane,
    state: str = "",
    contract: str = "",
    endpoint: str = "",
    label: str = "",
    created_after: str = "",
    created_before: str = "",
    order: str = SessionOrder.NEWEST_FIRST.value,
    cursor: str = "",
) -> HTMLResponse:
    """Sessions, the newest (or oldest) first, filtered, a keyset page at a time."""
    filters = {
        "order": order,
        "state": state,
        "contract": contract,
        "endpoint": endpoint,
        "label": label,
        "created_after": created_after,
        "created_before": created_before,
    }
    found: SessionPage | None = None
    error = None
    try:
        if state and state not in SessionState.__members__.values():
            raise ConfigurationError(f"there is no session state {state!r}")
        if order not in SessionOrder.__members__.values():
            raise ConfigurationError(f"list the newest or the oldest first, not {order!r}")
        found = await rest.list_sessions(
            plane,
            state=SessionState(state) if state else None,
            contract=contract or None,
            endpoint=endpoint or None,
            label=[label] if label else [],
            created_after=_moment(created_after, "created after"),
            created_before=_moment(created_before, "created before"),
            order=SessionOrder(order),
            limit=PAGE_SIZE,
            cursor=cursor or None,
        )
    except DurableSessionsError as e:
        error = str(e)
    context = {
        "filters": filters,
        "found": found,
        "error": error,
        "cursor": cursor,
        "states": [s.value for s in SessionState],
        "endpoints": sorted(plane.endpoints),
        "contracts": sorted({e.contract.name for e in plane.endpoints.values()}),
        "query": {k: v for k, v in filters.items() if v},
        "newest": order == SessionOrder.NEWEST_FIRST,
    }
    name = "_sessions_table.html" if live(request, "sessions-live") else "sessions.html"
    return page(request, login, name, context)


def _offers(state: SessionState) -> dict[str, bool]:
    return {
        event.value: (state, event) in TRANSITIONS
        for event in (SessionEvent.CLOSE, SessionEvent.TERMINATE, SessionEvent.RESUME)
    }


@router.get("/sessions/{session_id}")
async def session(request: Request, session_id: str, login: SignedIn, plane: Plane) -> HTMLResponse:
    """One session: state, watermarks, counters, instance state, fault, sequence, timeline."""
    try:
        shown = await rest.show_session(session_id, plane)
    except SessionNotFound as e:
        return not_found(request, login, "Session not found", str(e))
    messages = await rest.list_messages(
        session_id, plane, status_=None, limit=TIMELINE_SIZE, cursor=None
    )
    letters = await rest_dead_letters.list_dead_letters(
        plane, session_id=session_id, reason=None, limit=PAGE_SIZE, cursor=None
    )
    async with plane.store.snapshot() as uow:
        sequences = await uow.sequences.of_session(session_id)
    context = {
        "s": shown,
        "messages": messages,
        "letters": letters.items,
        "sequences": sequences,
        "offers": _offers(shown.state),
        "actions": [a.value for a in ResumeAction],
    }
    name = "_session_live.html" if live(request, "session-live") else "session.html"
    return page(request, login, name, context)


def _done(login: Login, session_id: str, kind: str, text: str) -> RedirectResponse:
    login.flash = (kind, text)
    return RedirectResponse(f"/ui/sessions/{session_id}", status_code=303)


@router.post("/sessions/{session_id}/close")
async def close(session_id: str, login: Acting, plane: Plane) -> RedirectResponse:
    """Close the session gracefully."""
    try:
        closed = await rest.close(session_id, plane)
    except DurableSessionsError as e:
        return _done(login, session_id, "error", str(e))
    return _done(login, session_id, "ok", f"close requested: the session is {closed.state}")


@router.post("/sessions/{session_id}/terminate")
async def terminate(
    session_id: str, login: Acting, plane: Plane, reason: Text = ""
) -> RedirectResponse:
    """Terminate the session; its pending messages become dead letters."""
    body = Terminate(reason=reason) if reason.strip() else Terminate()
    try:
        ended = await rest.terminate(session_id, plane, body)
    except DurableSessionsError as e:
        return _done(login, session_id, "error", str(e))
    return _done(login, session_id, "ok", f"the session is {ended.state}")


@router.post("/sessions/{session_id}/resume")
async def resume(
    session_id: str, login: Acting, plane: Plane, action: Text = ""
) -> RedirectResponse:
    """Resume the faulted session, retrying or skipping the message it stopped at."""
    if action not in ResumeAction.__members__.values():
        return _done(login, session_id, "error", f"resume with retry or skip, not {action!r}")
    try:
        resumed = await rest.resume(session_id, Resume(action=ResumeAction(action)), plane)
    except DurableSessionsError as e:
        return _done(login, session_id, "error", str(e))
    return _done(login, session_id, "ok", f"resumed with {action}: the session is {resumed.state}")
