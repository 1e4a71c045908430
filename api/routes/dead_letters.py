"""``/v1/dead-letters``: list and replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.auth import needs
from api.deps import Plane
from api.schemas import (
    DeadLetterOut,
    DeadLetterPage,
    Replay,
    ReplayMany,
    ReplayOut,
    decode_cursor,
    encode_cursor,
)
from durable_sessions.engine.replay import (
    NewSessionTimeouts,
    ReplayInto,
    replay_dead_letters,
    session_dead_letter_ids,
)
from durable_sessions.errors import ConfigurationError, DeadLetterNotFound
from durable_sessions.model.access import Permission
from durable_sessions.model.records import DeadLetterReason, utcnow
from durable_sessions.store.base import MAX_PAGE, DeadLetterQuery

router = APIRouter(tags=["dead letters"])


@router.get("/dead-letters", response_model=DeadLetterPage, dependencies=[needs(Permission.READ)])
async def list_dead_letters(
    plane: Plane,
    session_id: Annotated[str | None, Query(max_length=36)] = None,
    reason: DeadLetterReason | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeadLetterPage:
    """Dead letters, oldest first, by session and reason."""
    try:
        after = None if cursor is None else decode_cursor(cursor)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None
    query = DeadLetterQuery(session_id=session_id, reason=reason, after_id=after, limit=limit)
    async with plane.store.snapshot() as uow:
        found = await uow.dead_letters.find(query)
    more = len(found) == limit
    return DeadLetterPage(
        items=[DeadLetterOut.of(d) for d in found],
        next_cursor=encode_cursor(found[-1].id) if more and found else None,
    )


@router.get(
    "/dead-letters/{dead_letter_id}",
    response_model=DeadLetterOut,
    dependencies=[needs(Permission.READ)],
)
async def show_dead_letter(dead_letter_id: str, plane: Plane) -> DeadLetterOut:
    """One dead letter."""
    async with plane.store.snapshot() as uow:
        found = await uow.dead_letters.get(dead_letter_id)
    if found is None:
        raise DeadLetterNotFound(f"no dead letter with id {dead_letter_id!r}")
    return DeadLetterOut.of(found)


@router.post(
    "/dead-letters/{dead_letter_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReplayOut,
    dependencies=[needs(Permission.REPLAY)],
)
async def replay(dead_letter_id: str, plane: Plane, body: Replay | None = None) -> ReplayOut:
    """Replay one dead letter: into a new session, or as a datagram (docs: Replaying)."""
    return await _replay(plane, [dead_letter_id], body.into if body else None)


@router.post(
    "/dead-letters/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReplayOut,
    dependencies=[needs(Permission.REPLAY)],
)
async def replay_many(body: ReplayMany, plane: Plane) -> ReplayOut:
    """Replay dead letters by id, or all of one session's, in their original order."""
    if bool(body.ids) == (body.session_id is not None):
        raise ConfigurationError("give either ids or session_id, not both or neither")
    ids = body.ids
    if body.session_id is not None:
        async with plane.store.snapshot() as uow:
            ids = await session_dead_letter_ids(uow, body.session_id)
    return await _replay(plane, ids, body.into)


async def _replay(plane: Plane, ids: list[str], into: ReplayInto | None) -> ReplayOut:
    now, settings = utcnow(), plane.settings
    timeouts = NewSessionTimeouts(settings.session_inactivity_timeout_s, settings.session_ttl_s)
    replayed = await plane.client.transact(
        lambda tx: replay_dead_letters(tx, plane.endpoints, ids, now, timeouts=timeouts, into=into)
    )
    return ReplayOut.of(replayed)
