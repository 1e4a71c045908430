"""``/v1/sessions``: open, list, inspect, send, read messages, close, terminate, resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from api.auth import needs
from api.deps import ControlPlane, Plane
from api.schemas import (
    MAX_SEQ,
    Accepted,
    MessageOut,
    MessagePage,
    OpenSession,
    Resume,
    SendDatagram,
    SendMessage,
    SessionOpened,
    SessionOut,
    SessionPage,
    Terminate,
    decode_cursor,
    encode_cursor,
)
from durable_sessions.engine.control import close_session, resume_session, terminate_session
from durable_sessions.engine.sending import SendRequest, open_session
from durable_sessions.engine.signing import admit_signed
from durable_sessions.errors import (
    ConfigurationError,
    MessageNotFound,
    SessionNotFound,
    UnknownContract,
)
from durable_sessions.hosting.apikeys import digest, new_session_token
from durable_sessions.model import signatures
from durable_sessions.model.access import Permission, Principal
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import (
    MessageRecord,
    MessageStatus,
    SessionRecord,
    new_id,
    utcnow,
)
from durable_sessions.store.base import MAX_PAGE, SessionOrder, SessionQuery

router = APIRouter(tags=["sessions"])
MAX_WAIT_S = 60.0


async def _session(plane: ControlPlane, session_id: str) -> SessionRecord:
    async with plane.store.snapshot() as uow:
        session = await uow.sessions.get(session_id)
    if session is None:
        raise SessionNotFound(session_id)
    return session


def _endpoint(plane: ControlPlane, session: SessionRecord) -> Endpoint:
    endpoint = plane.endpoints.get(session.endpoint)
    if endpoint is None:
        raise UnknownContract(
            f"endpoint {session.endpoint!r} of session {session.id!r} is not served by this "
            "control plane (check DS_SERVICES)"
        )
    return endpoint


def _labels(values: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"label filters look like key=value, not {value!r}")
        labels[key] = wanted
    return labels


def _aware(moment: datetime | None) -> datetime | None:
    """A time filter in UTC; one given without a zone is taken as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.post("/sessions", status_code=status.HTTP_201_CREATED, response_model=SessionOpened)
async def create_session(
    body: OpenSession,
    plane: Plane,
    response: Response,
    caller: Annotated[Principal, needs(Permission.OPEN)],
) -> SessionOpened:
    """Open a session of a contract (on its endpoint, or the one named).

    The answer carries ``session_token``, shown once: a bearer credential for this session only;
    where the endpoint requires message security, also ``session_key``, to sign every send.
    """
    endpoint = plane.endpoints.for_contract(body.contract, body.endpoint)
    now = utcnow()
    session_id = new_id()
    token = new_session_token(session_id)
    session: SessionRecord = await plane.client.transact(
        lambda tx: open_session(
            tx.uow,
            endpoint,
            now,
            inactivity_timeout_s=body.inactivity_timeout_s
            or plane.settings.session_inactivity_timeout_s,
            ttl_s=body.ttl_s if body.ttl_s is not None else plane.settings.session_ttl_s,
            labels=body.labels,
            session_id=session_id,
            opened_by=caller.id,
            token_digest=digest(token),
        )
    )
    response.headers["Location"] = f"/v1/sessions/{session.id}"
    key = None
    if endpoint.signed:
        assert plane.session_secret is not None
        key = signatures.encode_key(signatures.session_key(plane.session_secret, session.id))
    return SessionOpened.opened(session, token, key)


@router.get("/sessions", response_model=SessionPage, dependencies=[needs(Permission.READ)])
async def list_sessions(
    plane: Plane,
    state: SessionState | None = None,
    contract: Annotated[str | None, Query(max_length=200)] = None,
    endpoint: Annotated[str | None, Query(max_length=200)] = None,
    label: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    order: SessionOrder = SessionOrder.OLDEST_FIRST,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SessionPage:
    """Sessions in creation order (``order=newest`` for the newest first), filtered by state,
    contract, endpoint, ``label=key=value`` and creation time (``created_after`` inclusive,
    ``created_before`` exclusive)."""
    try:
        after = None if cursor is None else decode_cursor(cursor)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None
    query = SessionQuery(
        state=state,
        contract=contract,
        endpoint=endpoint,
        labels=_labels(label),
        created_after=_aware(created_after),
        created_before=_aware(created_before),
        after_id=after,
        limit=limit,
        order=order,
    )
    async with plane.store.snapshot() as uow:
        found = await uow.sessions.find(query)
    more = len(found) == limit
    return SessionPage(
        items=[SessionOut.of(s, with_state=False) for s in found],
        next_cursor=encode_cursor(found[-1].id) if more and found else None,
    )


@router.get(
    "/sessions/{session_id}", response_model=SessionOut, dependencies=[needs(Permission.READ)]
)
async def show_session(session_id: str, plane: Plane) -> SessionOut:
    """A session: state, watermarks, counters, instance state, fault."""
    return SessionOut.of(await _session(plane, session_id))


@router.post(
    "/sessions/{session_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=[needs(Permission.SEND)],
)
async def send_message(
    session_id: str,
    body: SendMessage,
    plane: Plane,
    signature: Annotated[str | None, Header(alias=signatures.HEADER)] = None,
) -> Accepted:
    """Send one message; the same ``message_id`` again returns the first answer.

    To a session whose endpoint requires message security, the ``DS-Signature`` header signs
    the message with the session's key; a missing, malformed, wrong, stale or replayed one is
    refused with 401 and nothing is stored.
    """
    endpoint = _endpoint(plane, await _session(plane, session_id))
    request = SendRequest(endpoint, session_id, body.operation, body.args, body.message_id)
    if endpoint.signed:
        assert plane.session_secret is not None
        await admit_signed(
            plane.store,
            plane.session_secret,
            request,
            signature,
            time.time(),
            plane.settings.max_clock_skew_s,
        )
    sent = await plane.client.send(request)
    if not sent.duplicate:
        plane.metrics.sent.labels(endpoint.name).inc()
    return Accepted.of(sent.message)


@router.post(
    "/datagrams",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=[needs(Permission.SEND)],
)
async def send_a_datagram(body: SendDatagram, plane: Plane) -> Accepted:
    """Send one message outside any session (a contract that does not require sessions)."""
    endpoint = plane.endpoints.for_contract(body.contract, body.endpoint)
    sent = await plane.client.send(
        SendRequest(endpoint, None, body.operation, body.args, body.message_id)
    )
    if not sent.duplicate:
        plane.metrics.sent.labels(endpoint.name).inc()
    return Accepted.of(sent.message)


@router.get(
    "/sessions/{session_id}/messages",
    response_model=MessagePage,
    dependencies=[needs(Permission.READ)],
)
async def list_messages(
    session_id: str,
    plane: Plane,
    status_: Annotated[MessageStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> MessagePage:
    """A session's messages in seq order, optionally by status."""
    await _session(plane, session_id)
    try:
        after = 0 if cursor is None else int(decode_cursor(cursor))
        if not 0 <= after <= MAX_SEQ:
            raise ValueError(after)
    except ValueError:
        raise ConfigurationError(f"invalid cursor {cursor!r}") from None
    async with plane.store.snapshot() as uow:
        found = await uow.messages.for_session(
            session_id,
            statuses=None if status_ is None else [status_],
            after_seq=after,
            limit=limit,
        )
    more = len(found) == limit
    return MessagePage(
        items=[MessageOut.of(m) for m in found],
        next_cursor=encode_cursor(str(found[-1].seq)) if more and found else None,
    )


@router.get(
    "/sessions/{session_id}/messages/{seq}",
    response_model=MessageOut,
    dependencies=[needs(Permission.READ)],
)
async def show_message(
    session_id: str,
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ)],
    plane: Plane,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> MessageOut:
    """One message; ``?wait=SECONDS`` long-polls until it is applied or fails."""
    await _session(plane, session_id)

    async def read() -> MessageRecord | None:
        async with plane.store.snapshot() as uow:
            return await uow.messages.by_seq(session_id, seq)

    return MessageOut.of(await _wait(read, wait, f"session {session_id!r} has no seq {seq}"))


@router.get(
    "/messages/{message_id}",
    response_model=MessageOut,
    tags=["messages"],
    dependencies=[needs(Permission.READ)],
)
async def show_message_by_id(
    message_id: str,
    plane: Plane,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> MessageOut:
    """One message by id (datagrams too); ``?wait=SECONDS`` long-polls for the outcome."""

    async def read() -> MessageRecord | None:
        async with plane.store.snapshot() as uow:
            return await uow.messages.get(message_id)

    return MessageOut.of(await _wait(read, wait, f"no message with id {message_id!r}"))


async def _wait(
    read: Callable[[], Awaitable[MessageRecord | None]], wait_s: float, missing: str
) -> MessageRecord:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.005
    while True:
        message: MessageRecord | None = await read()
        if message is None:
            raise MessageNotFound(missing)
        if message.status.is_final or loop.time() >= deadline:
            return message
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(0.1, delay * 1.5)


@router.post(
    "/sessions/{session_id}/close",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SessionOut,
    dependencies=[needs(Permission.CLOSE)],
)
async def close(session_id: str, plane: Plane) -> SessionOut:
    """Close gracefully: ``closing`` now, ``closed`` once pending messages are applied."""
    now = utcnow()
    session: SessionRecord = await plane.client.transact(
        lambda tx: close_session(tx.uow, session_id, now)
    )
    return SessionOut.of(session)


@router.post(
    "/sessions/{session_id}/terminate",
    response_model=SessionOut,
    dependencies=[needs(Permission.TERMINATE)],
)
async def terminate(session_id: str, plane: Plane, body: Terminate | None = None) -> SessionOut:
    """Terminate now: pending messages become dead letters."""
    reason = (body or Terminate()).reason
    now = utcnow()
    session: SessionRecord = await plane.client.transact(
        lambda tx: terminate_session(tx.uow, session_id, reason, now)
    )
    return SessionOut.of(session)


@router.post(
    "/sessions/{session_id}/resume",
    response_model=SessionOut,
    dependencies=[needs(Permission.RESUME)],
)
async def resume(session_id: str, body: Resume, plane: Plane) -> SessionOut:
    """Resume a faulted session: retry the failed message, or skip it."""
    endpoint = _endpoint(plane, await _session(plane, session_id))
    now = utcnow()
    session = await plane.client.transact(
        lambda tx: resume_session(tx, endpoint, session_id, body.action, now)
    )
    return SessionOut.of(session)
