"""Building a process from settings: the store, the broker connection and the endpoints.

This is where the adapters are chosen (SQL store, RabbitMQ); ``api/``, ``workers/`` and the
command line call it, the core never does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence

from durable_sessions.broker.base import Broker
from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.engine.client import Client
from durable_sessions.engine.instancing import CPUS, Throttles
from durable_sessions.engine.outbox import OutboxRelay
from durable_sessions.errors import ConfigurationError
from durable_sessions.model.endpoints import (
    Binding,
    Endpoint,
    Endpoints,
    PoisonPolicy,
    ReceiveErrorHandling,
)
from durable_sessions.model.services import ServiceSpec, load_service
from durable_sessions.reliable import options
from durable_sessions.reliable.options import EndpointOptions
from durable_sessions.settings import Settings
from durable_sessions.store.base import Store
from durable_sessions.store.sql.store import SqlStore
from durable_sessions.wsrm.settings import ReliableSessionSettings


def poison_policy(settings: Settings) -> PoisonPolicy:
    """The poison policy the settings describe."""
    return PoisonPolicy(
        receive_retry_count=settings.receive_retry_count,
        max_retry_cycles=settings.max_retry_cycles,
        retry_cycle_delay_s=settings.retry_cycle_delay_s,
        receive_error_handling=ReceiveErrorHandling(settings.receive_error_handling),
    )


def reliable_settings(settings: Settings) -> ReliableSessionSettings:
    """The reliable-session settings every endpoint starts from (WCF's defaults but for
    ``DS_RELIABLE_INACTIVITY_TIMEOUT_S``)."""
    return ReliableSessionSettings(inactivity_timeout=settings.reliable_inactivity_timeout_s)


def reliable_options(settings: Settings, endpoints: Iterable[str]) -> dict[str, EndpointOptions]:
    """Each endpoint's reliable-session settings: the common ones with its own of
    ``DS_RELIABLE_SESSIONS`` applied; an endpoint named there must be one of ``endpoints``."""
    names = list(endpoints)
    configured = options.parse(settings.reliable_sessions)
    unknown = sorted(set(configured) - set(names))
    if unknown:
        raise ConfigurationError(
            f"reliable-session settings name {', '.join(map(repr, unknown))}, which this "
            f"process does not serve (its endpoints: {', '.join(names) or 'none'})"
        )
    base = reliable_settings(settings)
    return {name: options.endpoint_options(name, configured.get(name, {}), base) for name in names}


def throttles(settings: Settings) -> Throttles:
    """The worker throttles the settings describe."""
    return Throttles(
        max_batch_size=settings.worker_batch_size,
        max_batch_delay_s=settings.worker_batch_delay_s,
        sessions_per_batch=settings.worker_sessions_per_batch,
        prefetch=settings.worker_prefetch,
        max_concurrent_calls=settings.worker_max_concurrent_calls or 16 * CPUS,
        max_concurrent_sessions=settings.worker_max_concurrent_sessions or 100 * CPUS,
        max_concurrent_instances=settings.worker_max_concurrent_instances or None,
    )


def served_endpoints(
    settings: Settings,
    service_paths: Sequence[str] = (),
    endpoint: str | None = None,
    binding: Binding | None = None,
) -> list[tuple[Endpoint, ServiceSpec]]:
    """The services to serve (``DS_SERVICES`` unless given) and their checked endpoints.

    An entry ``module:Service@name:binding`` serves the service on the endpoint ``name`` with
    that binding; both parts are optional (``module:Service@name``, ``module:Service@:binding``).
    ``endpoint`` and ``binding`` override them for a single service.
    """
    paths = list(service_paths) or settings.service_paths()
    if not paths:
        raise ConfigurationError("no services to serve: set DS_SERVICES or pass --service")
    if endpoint is not None and len(paths) != 1:
        raise ConfigurationError("--endpoint names the endpoint of exactly one --service")
    if binding is not None and len(paths) != 1:
        raise ConfigurationError("--binding names the binding of exactly one --service")
    served = []
    for entry in paths:
        path, _, address = entry.partition("@")
        named, _, bound = address.partition(":")
        service = load_service(path)
        chosen = binding or (Binding.named(bound) if bound else None)
        served.append(
            (
                Endpoint.for_service(
                    service,
                    name=endpoint or named or None,
                    binding=chosen,
                    poison=poison_policy(settings),
                    session_queues=settings.session_queues,
                ),
                service,
            )
        )
    return served


def build_store(settings: Settings) -> SqlStore:
    """The SQL store of ``DS_DATABASE_URL``."""
    return SqlStore.from_url(settings.database_url)


async def connect_broker(settings: Settings) -> RabbitBroker:
    """A connection to the RabbitMQ of ``DS_BROKER_URL``."""
    return await RabbitBroker.connect(settings.broker_url, ca_file=settings.broker_ca_file or None)


@contextlib.asynccontextmanager
async def relayed_client(
    store: Store, broker: Broker, endpoints: Endpoints, settings: Settings
) -> AsyncIterator[Client]:
    """A client on ``store`` whose sends an outbox relay of its own publishes at once.

    Declares the endpoints' topology first; leaving the block publishes what is left.
    """
    for endpoint in endpoints.values():
        await broker.declare(endpoint.topology)
    relay = OutboxRelay(
        store,
        broker,
        poll_interval_s=settings.outbox_poll_interval_s,
        lease_s=settings.outbox_lease_s,
    )
    relaying = asyncio.create_task(relay.run(), name="outbox-relay")
    try:
        yield Client(
            store,
            endpoints,
            relay,
            inactivity_timeout_s=settings.session_inactivity_timeout_s,
            ttl_s=settings.session_ttl_s,
        )
    finally:
        await relay.drain(timeout_s=5.0)
        await relay.stop()
        await relaying


@contextlib.asynccontextmanager
async def connect_client(settings: Settings | None = None) -> AsyncIterator[Client]:
    """A :class:`~durable_sessions.engine.client.Client` on the configured store and broker.

    It publishes its own sends at once and knows the endpoints of ``DS_SERVICES``; leaving the
    block publishes what is left and disconnects.
    """
    settings = settings or Settings()
    endpoints = Endpoints(e for e, _ in served_endpoints(settings))
    store = build_store(settings)
    try:
        broker = await connect_broker(settings)
        try:
            async with relayed_client(store, broker, endpoints, settings) as client:
                yield client
        finally:
            await broker.close()
    finally:
        await store.close()
