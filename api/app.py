"""The control plane's FastAPI application: ``create_app(settings)``.

It owns a store, a broker connection and an outbox relay (so its sends are published at once),
checks bearer keys on every ``/v1`` route and renders every error as problem+json. Tests and
``durable-sessions up`` build it the same way; tests may hand in the memory twins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from api import problems
from durable_sessions.apikeys import key_matches, load_api_keys
from durable_sessions.client import Client
from durable_sessions.endpoints import Endpoint, Endpoints
from durable_sessions.errors import ConfigurationError
from durable_sessions.metrics import Metrics
from durable_sessions.relay import OutboxRelay
from durable_sessions.settings import Settings
from durable_sessions.store import Store
from durable_sessions.transport import Transport

MAX_BODY_BYTES = 1 << 20
LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


@dataclass(slots=True)
class ControlPlane:
    """What the routes work with, built once per application."""

    settings: Settings
    store: Store
    transport: Transport
    endpoints: Endpoints
    relay: OutboxRelay
    client: Client
    metrics: Metrics
    keys: list[str]


def control_plane(request: Request) -> ControlPlane:
    """The running application's :class:`ControlPlane`."""
    plane: ControlPlane = request.app.state.plane
    return plane


_bearer = HTTPBearer(auto_error=False)


async def require_key(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> None:
    """Accept only requests with ``Authorization: Bearer <a configured key>``."""
    plane = control_plane(request)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "send 'Authorization: Bearer <key>' (see DS_API_KEYS)")
    if not key_matches(credentials.credentials, plane.keys):
        raise HTTPException(401, "the bearer key is not valid")


async def require_key_off_loopback(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> None:
    """Health and metrics stay open on loopback; from elsewhere they need a key too."""
    if request.client is None or request.client.host not in LOOPBACK:
        await require_key(request, credentials)


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with 413, without reading them all."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        response = problems.problem(
            413, "too-large", "Too large", f"request body exceeds {self.limit} bytes"
        )
        await response(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    endpoints: Sequence[Endpoint] | None = None,
    store: Store | None = None,
    transport: Transport | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The control plane for ``settings``; ``store``/``transport`` replace the real ones."""
    from api.routes import dead_letters, sessions, soap, system
    from durable_sessions import hosting

    keys = load_api_keys(settings)
    if not keys:
        raise ConfigurationError(
            "the control plane needs an API key: set DS_API_KEYS, or run `durable-sessions up` "
            f"once to generate one in {settings.api_keys_file}"
        )
    known = Endpoints(
        endpoints if endpoints is not None else [e for e, _ in hosting.served_endpoints(settings)]
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store or hosting.build_store(settings)
        try:
            own_transport = transport or await hosting.connect_broker(settings)
            try:
                async with hosting.relayed_client(
                    own_store, own_transport, known, settings
                ) as client:
                    assert client.relay is not None
                    app.state.plane = ControlPlane(
                        settings=settings,
                        store=own_store,
                        transport=own_transport,
                        endpoints=known,
                        relay=client.relay,
                        client=client,
                        metrics=metrics or Metrics(),
                        keys=keys,
                    )
                    yield
            finally:
                if transport is None:
                    await own_transport.close()
        finally:
            if store is None:
                await own_store.close()

    app = FastAPI(
        title="durable-sessions control plane",
        version="1",
        summary="Open, inspect, drive, close, terminate and resume durable sessions.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(BodyLimit)
    secured = [Depends(require_key)]
    app.include_router(sessions.router, prefix="/v1", dependencies=secured)
    app.include_router(dead_letters.router, prefix="/v1", dependencies=secured)
    app.include_router(system.v1, prefix="/v1", dependencies=secured)
    app.include_router(soap.router, prefix="/v1", dependencies=secured)
    app.include_router(system.probes, dependencies=[Depends(require_key_off_loopback)])
    return app
