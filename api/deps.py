"""What every route depends on: the :class:`ControlPlane`.

Routes take ``plane: Plane``; ``app.py`` builds the plane. Who may call which route is
:mod:`api.auth`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from durable_sessions.broker.base import Broker
from durable_sessions.engine.client import Client
from durable_sessions.engine.outbox import OutboxRelay
from durable_sessions.hosting.metrics import Metrics
from durable_sessions.hosting.sampler import Sampler
from durable_sessions.model.endpoints import Endpoints
from durable_sessions.reliable.options import EndpointOptions
from durable_sessions.reliable.pending import PendingChannels
from durable_sessions.settings import Settings
from durable_sessions.store.base import Store


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
    """The configured admin keys (``DS_API_KEYS`` and the key file); stored keys are looked up."""
    sampler: Sampler
    reliable: dict[str, EndpointOptions]
    """Per endpoint, its reliable-session settings (``DS_RELIABLE_SESSIONS``)."""
    pending_channels: dict[str, PendingChannels]
    """Per endpoint, its sequences this process has not yet accepted (WCF MaxPendingChannels)."""
    session_secret: bytes | None = None
    """The server secret of the security session; None when no endpoint here requires it."""


def control_plane(request: Request) -> ControlPlane:
    """The running application's :class:`ControlPlane`."""
    plane: ControlPlane = request.app.state.plane
    return plane


Plane = Annotated[ControlPlane, Depends(control_plane)]
"""A route parameter of this type receives the :class:`ControlPlane`."""
