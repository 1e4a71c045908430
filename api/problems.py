"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``type`` per kind of error."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from durable_sessions import errors

log = logging.getLogger("durable_sessions.api")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:durable-sessions:problem:"

# Most specific first: the first class an error is an instance of decides.
_PROBLEMS: list[tuple[type[Exception], int, str, str]] = [
    (errors.SessionNotFound, 404, "session-not-found", "Session not found"),
    (errors.MessageNotFound, 404, "message-not-found", "Message not found"),
    (errors.EndpointNotFound, 404, "endpoint-not-found", "Endpoint not found"),
    (errors.KeyNotFound, 404, "key-not-found", "API key not found"),
    (errors.AccessDenied, 403, "forbidden", "Forbidden"),
    (errors.DeadLetterNotFound, 404, "dead-letter-not-found", "Dead letter not found"),
    (errors.UnknownContract, 422, "unknown-contract", "Unknown contract"),
    (errors.SessionsNotAllowed, 422, "sessions-not-allowed", "Contract does not allow sessions"),
    (errors.UnknownOperation, 422, "unknown-operation", "Unknown operation"),
    (errors.InvalidArguments, 422, "invalid-arguments", "Invalid arguments"),
    (errors.NotInitiating, 422, "not-initiating", "Operation cannot start the session"),
    (errors.SessionNotOpen, 409, "session-not-open", "Session does not accept messages"),
    (
        errors.TerminatingOperationCalled,
        409,
        "terminating-operation-called",
        "Terminating operation already called",
    ),
    (errors.MessageIdConflict, 409, "message-id-conflict", "Message id already used"),
    (errors.IllegalTransition, 409, "illegal-transition", "Not possible in this state"),
    (errors.ReplayRefused, 409, "replay-refused", "Dead letter cannot be replayed"),
    (errors.ListenerNotFaulted, 409, "listener-not-faulted", "Datagram listener is not faulted"),
    (errors.KeyExists, 409, "key-exists", "API key name already used"),
    (errors.MessageRejected, 422, "invalid-message", "Invalid message"),
    (errors.ConfigurationError, 422, "invalid-request", "Invalid request"),
    (errors.StoreUnavailable, 503, "store-unavailable", "Database unavailable"),
    (errors.BrokerUnavailable, 503, "broker-unavailable", "Message broker unavailable"),
]


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail}
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _domain_error(request: Request, error: Exception) -> JSONResponse:
    for kind, status, slug, title in _PROBLEMS:
        if isinstance(error, kind):
            extra: dict[str, Any] = {}
            if isinstance(error, errors.InvalidArguments) and error.errors:
                extra["errors"] = error.errors
            if isinstance(error, errors.SessionNotOpen):
                extra["state"] = error.state
            if isinstance(error, errors.IllegalTransition):
                extra["state"] = error.state
            return problem(status, slug, title, str(error), **extra)
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return problem(
        500, "internal-error", "Internal error", "the server could not handle this request"
    )


def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in error.errors()
    ]
    shown = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
    return problem(422, "invalid-request", "Invalid request", shown, errors=details)


def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    slug = {401: "unauthorized", 404: "not-found", 405: "method-not-allowed", 413: "too-large"}
    title = {401: "Unauthorized", 404: "Not found", 405: "Method not allowed", 413: "Too large"}
    return problem(
        error.status_code,
        slug.get(error.status_code, "http-error"),
        title.get(error.status_code, "HTTP error"),
        str(error.detail),
    )


def install(app: FastAPI) -> None:
    """Render every error of ``app`` as problem+json."""
    app.add_exception_handler(errors.DurableSessionsError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _domain_error)
