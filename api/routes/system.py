"""Contracts (``/v1/contracts``), health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.auth import needs
from api.deps import Plane
from api.schemas import ContractOut
from durable_sessions.errors import DurableSessionsError
from durable_sessions.hosting.metrics import render
from durable_sessions.model.access import Permission
from durable_sessions.model.records import utcnow

v1 = APIRouter(tags=["contracts"])
probes = APIRouter(tags=["operations"])


@v1.get("/contracts", response_model=list[ContractOut], dependencies=[needs(Permission.READ)])
async def contracts(plane: Plane) -> list[ContractOut]:
    """The contracts served here: operations with their flags and argument schemas."""
    return [ContractOut.of(endpoint) for endpoint in plane.endpoints.values()]


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@probes.get("/readyz")
async def readyz(plane: Plane) -> JSONResponse:
    """The database and the broker are reachable."""
    checks: dict[str, str] = {}
    for name, ping in (("database", plane.store.ping), ("broker", plane.broker.ping)):
        try:
            await ping()
            checks[name] = "ok"
        except DurableSessionsError as e:
            checks[name] = str(e)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@probes.get("/metrics")
async def metrics(plane: Plane) -> Response:
    """Prometheus metrics: sessions by state, message counters, apply latency, outbox lag."""
    body = await render(plane.metrics, plane.store, utcnow())
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
