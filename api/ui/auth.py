"""Signing in to the dashboard, CSRF checks, and who may act.

A key is checked once, at ``/ui/login``, by :func:`api.auth.authenticate` (the same check as
REST's); the browser then holds an opaque random token in an HttpOnly, SameSite=Strict cookie,
and the server keeps only its SHA-256 with the key's :class:`Principal` (never the key). A
stored key revoked since is refused on the next page. Each sign-in has its own CSRF token,
embedded in every form and in htmx's ``X-CSRF-Token`` header, and every POST must carry it
(the sign-in form itself uses a double-submit cookie). Sign-out forgets the token. Tokens live
in this process: restarting the control plane signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from api.auth import CONFIGURED, Principal, allows
from api.deps import Plane
from durable_sessions.model.access import Permission, Role
from durable_sessions.model.records import utcnow

COOKIE = "ds_ui"
LOGIN_CSRF_COOKIE = "ds_ui_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SIGN_IN_FOR = timedelta(hours=12)


ACTIONS = (
    Permission.CLOSE,
    Permission.TERMINATE,
    Permission.RESUME,
    Permission.REPLAY,
    Permission.RESUME_LISTENER,
)
"""What the dashboard's buttons do."""


def may_look(principal: Principal) -> bool:
    """True if ``principal`` may sign in: it reads every session (admin, operator, reader)."""
    return principal.role is not Role.SESSION and allows(principal, Permission.READ)


def may_act(principal: Principal) -> bool:
    """True if ``principal`` may change things (close, terminate, resume, replay).

    The one place the dashboard decides it: every action button and every POST asks here. An
    admin or an operator may, unless the key is scoped to one contract (the dashboard does not
    narrow its buttons to a contract); a reader may only look.
    """
    return all(allows(principal, permission) for permission in ACTIONS)


@dataclass(slots=True)
class Login:
    """One sign-in: its principal, CSRF token, expiry and a message for the next page."""

    principal: Principal
    csrf: str
    expires_at: datetime
    flash: tuple[str, str] | None = None


@dataclass(slots=True)
class Logins:
    """The sign-ins of this process, by the SHA-256 of their cookie token."""

    _by_digest: dict[str, Login] = field(default_factory=dict)

    def open(self, principal: Principal, now: datetime) -> str:
        """Start a sign-in; return the token for the cookie."""
        self._forget_expired(now)
        token = secrets.token_urlsafe(32)
        self._by_digest[_digest(token)] = Login(
            principal, secrets.token_urlsafe(32), now + SIGN_IN_FOR
        )
        return token

    def get(self, token: str | None, now: datetime) -> Login | None:
        """The live sign-in of ``token``, or None."""
        if not token:
            return None
        login = self._by_digest.get(_digest(token))
        if login is None or login.expires_at <= now:
            return None
        return login

    def close(self, token: str | None) -> None:
        """Forget a sign-in."""
        if token:
            self._by_digest.pop(_digest(token), None)

    def _forget_expired(self, now: datetime) -> None:
        for digest in [d for d, login in self._by_digest.items() if login.expires_at <= now]:
            del self._by_digest[digest]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignInRequired(Exception):
    """The request has no live sign-in: the dashboard answers with the sign-in page."""


def logins(request: Request) -> Logins:
    """The application's sign-ins."""
    found: Logins = request.app.state.ui_logins
    return found


async def signed_in(request: Request, plane: Plane) -> Login:
    """The request's sign-in, else :class:`SignInRequired` (also once its key is revoked)."""
    token = request.cookies.get(COOKIE)
    login = logins(request).get(token, utcnow())
    if login is None:
        raise SignInRequired
    if login.principal.id != CONFIGURED.id:
        async with plane.store.snapshot() as uow:
            still = await uow.keys.by_prefix(login.principal.id)
        if still is None:
            logins(request).close(token)
            raise SignInRequired
    return login


SignedIn = Annotated[Login, Depends(signed_in)]
"""A page parameter of this type receives the sign-in (or the visitor is sent to sign in)."""


async def checked(request: Request, login: SignedIn) -> Login:
    """A POST of a signed-in visitor: it must carry the sign-in's CSRF token."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if given is None or not hmac.compare_digest(given.encode(), login.csrf.encode()):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    return login


Checked = Annotated[Login, Depends(checked)]
"""A POST's parameter of this type: the sign-in, its CSRF token checked."""


async def acting(login: Checked) -> Login:
    """A POST that changes something: a checked CSRF token and leave to act."""
    if not may_act(login.principal):
        raise HTTPException(403, "this key may look but not act")
    return login


Acting = Annotated[Login, Depends(acting)]
"""An action's parameter of this type: a checked CSRF token and leave to act."""


def login_csrf_ok(request: Request, given: str | None) -> bool:
    """True if the sign-in form's token matches its double-submit cookie."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
