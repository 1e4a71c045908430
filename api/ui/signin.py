"""``/ui/login`` and ``/ui/logout``: a key in, an opaque cookie out, and back."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.exceptions import HTTPException

from api.auth import authenticate
from api.deps import Plane
from api.ui.auth import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SIGN_IN_FOR,
    Checked,
    login_csrf_ok,
    logins,
    may_look,
)
from api.ui.render import page
from durable_sessions.model.records import utcnow

router = APIRouter()


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _form(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        None,
        "login.html",
        {"login_csrf": token, "error": error},
        status_code=status_code,
    )
    _cookie(request, response, LOGIN_CSRF_COOKIE, token, 3600)
    return response


@router.get("/login", response_model=None)
async def login_form(request: Request) -> Response:
    """The sign-in form (the overview, for a visitor signed in already)."""
    if logins(request).get(request.cookies.get(COOKIE), utcnow()) is not None:
        return RedirectResponse("/ui/", status_code=303)
    return _form(request)


@router.post("/login", response_model=None)
async def login(
    request: Request,
    plane: Plane,
    key: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=100)] = "",
) -> Response:
    """Check the key; on success set the sign-in cookie and go to the overview."""
    if not login_csrf_ok(request, csrf_token):
        return _form(request, "the form expired: sign in again", 403)
    try:
        principal = await authenticate(
            request, plane, HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
        )
    except HTTPException:
        return _form(request, "that key is not valid", 401)
    if not may_look(principal):
        return _form(
            request, "this key may not read every session: sign in with a reader key or more", 403
        )
    token = logins(request).open(principal, utcnow())
    response = RedirectResponse("/ui/", status_code=303)
    _cookie(request, response, COOKIE, token, int(SIGN_IN_FOR.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
    return response


@router.post("/logout")
async def logout(request: Request, _: Checked) -> RedirectResponse:
    """Forget the sign-in and its cookie."""
    logins(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
