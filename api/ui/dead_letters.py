"""``/ui/dead-letters``: find dead letters, look at the call and the reason, replay them.

Listing, showing and replaying call the REST route functions of :mod:`api.routes.dead_letters`,
so a replay here keeps the order rules of :mod:`durable_sessions.engine.replay`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import Plane
from api.routes import dead_letters as rest
from api.schemas import DeadLetterPage, ReplayMany
from api.ui.auth import Acting, SignedIn
from api.ui.render import live, not_found, page
from durable_sessions.engine.replay import MAX_REPLAY, ReplayInto
from durable_sessions.errors import ConfigurationError, DeadLetterNotFound, DurableSessionsError
from durable_sessions.model.records import DeadLetterReason

router = APIRouter()
PAGE_SIZE = 50


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    login: SignedIn,
    plane: Plane,
    reason: str = "",
    session_id: str = "",
    cursor: str = "",
) -> HTMLResponse:
    """Dead letters, oldest first, by reason and session, a keyset page at a time."""
    found: DeadLetterPage | None = None
    error = None
    try:
        if reason and reason not in DeadLetterReason.__members__.values():
            raise ConfigurationError(f"there is no dead-letter reason {reason!r}")
        found = await rest.list_dead_letters(
            plane,
            session_id=session_id[:36] or None,
            reason=DeadLetterReason(reason) if reason else None,
            limit=PAGE_SIZE,
            cursor=cursor or None,
        )
    except DurableSessionsError as e:
        error = str(e)
    filters = {"reason": reason, "session_id": session_id}
    context = {
        "filters": filters,
        "query": {k: v for k, v in filters.items() if v},
        "found": found,
        "error": error,
        "cursor": cursor,
        "reasons": [r.value for r in DeadLetterReason],
        "intos": [i.value for i in ReplayInto],
    }
    name = "_dead_letters_table.html" if live(request, "letters-live") else "dead_letters.html"
    return page(request, login, name, context)


@router.get("/dead-letters/{dead_letter_id}")
async def dead_letter(
    request: Request, dead_letter_id: str, login: SignedIn, plane: Plane
) -> HTMLResponse:
    """One dead letter: the call, the reason, the attempts, and its replay."""
    try:
        shown = await rest.show_dead_letter(dead_letter_id, plane)
    except DeadLetterNotFound as e:
        return not_found(request, login, "Dead letter not found", str(e))
    context = {"d": shown, "intos": [i.value for i in ReplayInto]}
    return page(request, login, "dead_letter.html", context)


@router.post("/dead-letters/replay")
async def replay(
    login: Acting,
    plane: Plane,
    ids: Annotated[list[str], Form(max_length=MAX_REPLAY)] = [],  # noqa: B006
    into: Annotated[str, Form(max_length=40)] = "",
) -> RedirectResponse:
    """Replay the dead letters ticked: into a new session (then shown) or as datagrams."""
    back = RedirectResponse("/ui/dead-letters", status_code=303)
    if not ids:
        login.flash = ("error", "tick at least one dead letter to replay")
        return back
    try:
        if into and into not in ReplayInto.__members__.values():
            raise ConfigurationError(f"replay into a new session or as datagrams, not {into!r}")
        body = ReplayMany(ids=[i[:36] for i in ids], into=ReplayInto(into) if into else None)
        replayed = await rest.replay_many(body, plane)
    except DurableSessionsError as e:
        login.flash = ("error", str(e))
        return back
    count = len(replayed.messages)
    if replayed.session_id is None:
        login.flash = ("ok", f"replayed {count} dead letter(s) as datagrams")
        return back
    login.flash = ("ok", f"replayed {count} dead letter(s) into this new session")
    return RedirectResponse(f"/ui/sessions/{replayed.session_id}", status_code=303)
