"""``/v1/endpoints``: the endpoints served, and resuming a faulted datagram listener."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import needs
from api.deps import Plane
from api.schemas import EndpointOut, ListenerResumed, Resume
from durable_sessions.engine.listeners import resume_listener
from durable_sessions.errors import EndpointNotFound
from durable_sessions.model.access import Permission
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import utcnow

router = APIRouter(tags=["endpoints"])


def _endpoint(plane: Plane, name: str) -> Endpoint:
    endpoint = plane.endpoints.get(name)
    if endpoint is None:
        known = ", ".join(sorted(plane.endpoints))
        raise EndpointNotFound(f"no endpoint {name!r} is served here (known: {known})")
    return endpoint


@router.get("/endpoints", response_model=list[EndpointOut], dependencies=[needs(Permission.READ)])
async def list_endpoints(plane: Plane) -> list[EndpointOut]:
    """Every endpoint served, with its datagram listener open or faulted."""
    async with plane.store.snapshot() as uow:
        faults = {f.endpoint: f for f in await uow.listener_faults.all()}
    return [EndpointOut.of(e, faults.get(e.name)) for e in plane.endpoints.values()]


@router.get("/endpoints/{name}", response_model=EndpointOut, dependencies=[needs(Permission.READ)])
async def show_endpoint(name: str, plane: Plane) -> EndpointOut:
    """One endpoint, with its datagram listener open or faulted."""
    endpoint = _endpoint(plane, name)
    async with plane.store.snapshot() as uow:
        fault = await uow.listener_faults.get(endpoint.name)
    return EndpointOut.of(endpoint, fault)


@router.post(
    "/endpoints/{name}/resume",
    response_model=ListenerResumed,
    dependencies=[needs(Permission.RESUME_LISTENER)],
)
async def resume(name: str, body: Resume, plane: Plane) -> ListenerResumed:
    """Resume a faulted datagram listener: retry the datagram it stopped at, or skip it."""
    endpoint = _endpoint(plane, name)
    now = utcnow()
    fault, message = await plane.client.transact(
        lambda tx: resume_listener(tx, endpoint, body.action, now)
    )
    return ListenerResumed(
        endpoint=EndpointOut.of(endpoint, None),
        message_id=fault.message_id,
        status=None if message is None else message.status,
    )
