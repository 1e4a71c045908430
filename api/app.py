"""The control plane's FastAPI application: ``create_app(settings)``.

It owns a store, a broker connection and an outbox relay (so its sends are published at once),
checks the caller and its permission on every ``/v1`` route, renders every error as
problem+json and serves the operator's dashboard at ``/ui/`` (:mod:`api.ui`). Tests and
``durable-sessions up`` build it the same way; tests may hand in the memory twins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException

from api import problems, ui
from api.auth import authenticate, require_key_off_loopback
from api.deps import ControlPlane
from api.routes import dead_letters, keys, listeners, sessions, soap, system
from durable_sessions.broker.base import Broker
from durable_sessions.errors import ConfigurationError
from durable_sessions.hosting import composition
from durable_sessions.hosting.apikeys import load_api_keys
from durable_sessions.hosting.metrics import Metrics
from durable_sessions.hosting.sampler import Sampler
from durable_sessions.hosting.session_secret import load_session_secret
from durable_sessions.model.endpoints import Endpoint, Endpoints
from durable_sessions.reliable.pending import PendingChannels
from durable_sessions.settings import Settings
from durable_sessions.store.base import Store

MAX_BODY_BYTES = 1 << 20


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


@asynccontextmanager
async def _sampling(sampler: Sampler) -> AsyncIterator[None]:
    task = asyncio.create_task(sampler.run())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def create_app(
    settings: Settings,
    *,
    endpoints: Sequence[Endpoint] | None = None,
    store: Store | None = None,
    broker: Broker | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The control plane for ``settings``; ``store``/``broker`` replace the real ones."""
    configured = load_api_keys(settings)
    if not configured:
        raise ConfigurationError(
            "the control plane needs an API key: set DS_API_KEYS, or run `durable-sessions up` "
            f"once to generate one in {settings.api_keys_file}"
        )
    known = Endpoints(
        endpoints
        if endpoints is not None
        else [e for e, _ in composition.served_endpoints(settings)]
    )
    reliable = composition.reliable_options(settings, known)
    # Read (or generated) only where an endpoint requires the security session.
    secret = load_session_secret(settings) if any(e.signed for e in known.values()) else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store or composition.build_store(settings)
        try:
            own_broker = broker or await composition.connect_broker(settings)
            try:
                async with composition.relayed_client(
                    own_store, own_broker, known, settings
                ) as client:
                    assert client.relay is not None
                    own_metrics = metrics or Metrics()
                    app.state.plane = ControlPlane(
                        settings=settings,
                        store=own_store,
                        broker=own_broker,
                        endpoints=known,
                        relay=client.relay,
                        client=client,
                        metrics=own_metrics,
                        keys=configured,
                        reliable=reliable,
                        pending_channels={
                            name: PendingChannels(o.settings.max_pending_channels)
                            for name, o in reliable.items()
                        },
                        session_secret=secret,
                        sampler=Sampler(own_metrics),
                    )
                    async with _sampling(app.state.plane.sampler):
                        yield
            finally:
                if broker is None:
                    await own_broker.close()
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
    # Every route also declares the permission it needs (api.auth.needs).
    secured = [Depends(authenticate)]
    errors = problems.documented(400, 401, 403, 404, 409, 413, 422, 503)
    app.include_router(sessions.router, prefix="/v1", dependencies=secured, responses=errors)
    app.include_router(dead_letters.router, prefix="/v1", dependencies=secured, responses=errors)
    app.include_router(listeners.router, prefix="/v1", dependencies=secured, responses=errors)
    app.include_router(system.v1, prefix="/v1", dependencies=secured, responses=errors)
    app.include_router(soap.router, prefix="/v1", dependencies=secured, responses=errors)
    app.include_router(keys.router, prefix="/v1", dependencies=secured, responses=errors)
    app.include_router(
        system.probes,
        dependencies=[Depends(require_key_off_loopback)],
        responses=problems.documented(401),
    )
    ui.install(app)
    return app
