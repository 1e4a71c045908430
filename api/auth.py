"""Who is calling and whether they may: the :class:`Principal` of a request and ``require``.

Every route declares the one permission it needs, ``Depends(require(Permission.CLOSE))``;
:func:`require` finds what the request is about (the session of its path, or the contract of
its path, query or body) and asks :func:`~durable_sessions.model.access.allows`, so the rules
live in one table (``ROLE_PERMISSIONS``) and one function. Stable for other parts of the app:
:class:`Principal`, :func:`allows`, :func:`authenticate` and :func:`require`.

Stored keys and session tokens are looked up in the database on every request (configured
keys are compared in memory first), so a revoked key or an ended session is refused at once by
every control plane.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from api.deps import ControlPlane, Plane
from durable_sessions.errors import AccessDenied
from durable_sessions.hosting.apikeys import (
    digest_matches,
    key_matches,
    key_prefix,
    token_session,
)
from durable_sessions.model.access import (
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    Role,
    SessionLike,
    allows,
)
from durable_sessions.model.records import SessionRecord, utcnow

__all__ = ["Caller", "Principal", "allows", "authenticate", "needs", "require"]

log = logging.getLogger("durable_sessions.api.auth")

LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
LAST_USED_EVERY = timedelta(minutes=1)
"""How stale a key's ``last_used_at`` may get: at most one write a minute per key."""
CONFIGURED = Principal(name="configured", role=Role.ADMIN, id="config")
"""Whoever presents a key of ``DS_API_KEYS`` or of the key file."""

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_INVALID = "the bearer key is not valid"


async def authenticate(request: Request, plane: Plane, credentials: Credentials) -> Principal:
    """The caller of ``Authorization: Bearer <key or session token>``, or 401."""
    try:
        return await _authenticate(plane, credentials)
    except HTTPException as refused:
        # The log names the request and the reason, never the credential.
        log.info("unauthenticated %s %s: %s", request.method, request.url.path, refused.detail)
        raise


async def _authenticate(plane: ControlPlane, credentials: Credentials) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "send 'Authorization: Bearer <key>' (see DS_API_KEYS)")
    given = credentials.credentials
    if key_matches(given, plane.keys):
        return CONFIGURED
    if (session_id := token_session(given)) is not None:
        return await _session_token(plane, session_id, given)
    if (prefix := key_prefix(given)) is not None:
        return await _stored_key(plane, prefix, given)
    raise HTTPException(401, _INVALID)


async def _session_token(plane: ControlPlane, session_id: str, token: str) -> Principal:
    async with plane.store.snapshot() as uow:
        session = await uow.sessions.get(session_id)
    if session is None or session.token_digest is None:
        raise HTTPException(401, _INVALID)
    if not digest_matches(token, session.token_digest):
        raise HTTPException(401, _INVALID)
    if session.state.is_final:
        raise HTTPException(401, f"the session token's session is {session.state}")
    return Principal(
        name=f"session {session.id}",
        role=Role.SESSION,
        id=session.id,
        contract=session.contract,
        session_id=session.id,
    )


async def _stored_key(plane: ControlPlane, prefix: str, key: str) -> Principal:
    async with plane.store.snapshot() as uow:
        found = await uow.keys.by_prefix(prefix)
    if found is None or not digest_matches(key, found.digest):
        raise HTTPException(401, _INVALID)
    now = utcnow()
    if found.last_used_at is None or now - found.last_used_at >= LAST_USED_EVERY:
        async with plane.store.transaction() as uow:
            await uow.keys.used(found.name, now)
    return Principal(name=found.name, role=found.role, id=found.prefix, contract=found.contract)


Caller = Annotated[Principal, Depends(authenticate)]
"""A route parameter of this type receives the authenticated :class:`Principal`."""


def needs(permission: Permission) -> Any:
    """``Depends(require(permission))``: for a route's ``dependencies`` or a parameter."""
    return Depends(require(permission))


async def _subject(request: Request, plane: ControlPlane) -> tuple[str | None, SessionLike | None]:
    """The contract and session a request is about, as far as its path, query or body say."""
    params = request.path_params
    async with plane.store.snapshot() as uow:
        session: SessionRecord | None = None
        if "session_id" in params:
            session = await uow.sessions.get(params["session_id"])
        elif "message_id" in params:
            message = await uow.messages.get(params["message_id"])
            if message is not None and message.session_id is not None:
                session = await uow.sessions.get(message.session_id)
            elif message is not None:
                return _endpoint_contract(plane, message.endpoint), None
        elif "dead_letter_id" in params:
            letter = await uow.dead_letters.get(params["dead_letter_id"])
            return (None if letter is None else letter.contract), None
        elif "session_id" in request.query_params:
            session = await uow.sessions.get(request.query_params["session_id"])
    if session is not None:
        return session.contract, session
    for name in ("endpoint", "name"):
        if name in params:
            return _endpoint_contract(plane, params[name]), None
    return request.query_params.get("contract") or await _body_contract(request), None


def _endpoint_contract(plane: ControlPlane, name: str) -> str | None:
    endpoint = plane.endpoints.get(name)
    return None if endpoint is None else endpoint.contract.name


async def _body_contract(request: Request) -> str | None:
    if not request.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body: Any = json.loads(await request.body())
    except ValueError:
        return None
    contract = body.get("contract") if isinstance(body, dict) else None
    return contract if isinstance(contract, str) else None


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only callers allowed ``permission`` on what the request is about.

    Refused: 403, problem type ``urn:durable-sessions:problem:forbidden``, before the route runs.
    """

    async def check(request: Request, plane: Plane, caller: Caller) -> Principal:
        if caller.role is Role.ADMIN and caller.contract is None:
            return caller
        contract, session = await _subject(request, plane)
        if not allows(caller, permission, contract=contract, session=session):
            detail = _refusal(caller, permission)
            log.info("forbidden %s %s: %s", request.method, request.url.path, detail)
            raise AccessDenied(detail)
        return caller

    return check


def _refusal(caller: Principal, permission: Permission) -> str:
    action = permission.replace("_", " ")
    if caller.role is Role.SESSION:
        return f"a session token may {action} its own session only"
    scope = f", scoped to contract {caller.contract!r}" if caller.contract else ""
    who = f"key {caller.name!r} ({caller.role}{scope})"
    if permission not in ROLE_PERMISSIONS[caller.role]:
        return f"{who} may not {action}"
    if caller.role is Role.SENDER:
        return f"{who} may {action} only on the sessions it opened{scope and ' of that contract'}"
    return f"{who} may {action} only on that contract"


async def require_key_off_loopback(
    request: Request, plane: Plane, credentials: Credentials
) -> None:
    """Health and metrics stay open on loopback; from elsewhere they need a reading key."""
    if request.client is None or request.client.host not in LOOPBACK:
        caller = await authenticate(request, plane, credentials)
        if not allows(caller, Permission.READ):
            raise AccessDenied(_refusal(caller, Permission.READ))
