"""What every route depends on: the :class:`ControlPlane` and the checks of bearer keys.

Routes take ``plane: Plane``; ``app.py`` builds the plane and guards the routers with
:func:`require_key` (or :func:`require_key_off_loopback` for health and metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from durable_sessions.broker.base import Broker
from durable_sessions.engine.client import Client
from durable_sessions.engine.outbox import OutboxRelay
from durable_sessions.hosting.apikeys import key_matches
from durable_sessions.hosting.metrics import Metrics
from durable_sessions.hosting.sampler import Sampler
from durable_sessions.model.endpoints import Endpoints
from durable_sessions.settings import Settings
from durable_sessions.store.base import Store

LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


@dataclass(slots=True)
class ControlPlane:
    """What the routes work with, built once per application."""

    settings: Settings
    store: Store
    broker: Broker
    endpoints: Endpoints
    relay: OutboxRelay
    client: Client
    metrics: Metrics
    keys: list[str]
    sampler: Sampler


def control_plane(request: Request) -> ControlPlane:
    """The running application's :class:`ControlPlane`."""
    plane: ControlPlane = request.app.state.plane
    return plane


Plane = Annotated[ControlPlane, Depends(control_plane)]
"""A route parameter of this type receives the :class:`ControlPlane`."""

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_key(plane: Plane, credentials: Credentials) -> None:
    """Accept only requests with ``Authorization: Bearer <a configured key>``."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "send 'Authorization: Bearer <key>' (see DS_API_KEYS)")
    if not key_matches(credentials.credentials, plane.keys):
        raise HTTPException(401, "the bearer key is not valid")


async def require_key_off_loopback(
    request: Request, plane: Plane, credentials: Credentials
) -> None:
    """Health and metrics stay open on loopback; from elsewhere they need a key too."""
    if request.client is None or request.client.host not in LOOPBACK:
        await require_key(plane, credentials)
