"""A SINGLE service has one instance: two runtimes (each with its own store connection, as two
worker processes have) never serve it at once, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.engine.runtime import Runtime
from durable_sessions.errors import SingletonInUse
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import MessageStatus, utcnow
from durable_sessions.model.services import service_of
from durable_sessions.store.base import Store
from durable_sessions.store.memory import MemoryStore
from durable_sessions.store.sql.store import SqlStore
from tests.modes import SingleTallyService, Tally
from tests.stacks import empty_postgres

LEASE_S = 0.6
SPEC = service_of(SingleTallyService)
LEASE = f"single:{SPEC.path}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Store]]:
    """Makes a store on one database per call: a connection pool of its own for SQL."""
    if request.param == "memory":
        shared = MemoryStore()
        yield lambda: shared
        return
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
        await empty_postgres(url)
    made: list[SqlStore] = []

    def make() -> Store:
        made.append(SqlStore.from_url(url))
        return made[-1]

    yield make
    for store in made:
        await store.close()


def runtime(store: Store, node: MemoryNode) -> Runtime:
    endpoint = Endpoint.for_service(SPEC)
    return Runtime(
        store,
        node.connect(),
        [(endpoint, SPEC)],
        sweep_interval_s=0.05,
        relay_poll_interval_s=0.05,
        singleton_lease_s=LEASE_S,
    )


async def test_a_second_runtime_refuses_to_serve_a_single_service(
    stores: Callable[[], Store],
) -> None:
    node = MemoryNode()
    first, second = runtime(stores(), node), runtime(stores(), node)
    async with first:
        with pytest.raises(SingletonInUse) as refused:
            async with asyncio.timeout(5 * LEASE_S):
                await second.start()
        assert str(refused.value) == (
            "service 'SingleTallyService' uses Instancing.SINGLE (one instance for all calls), "
            f"and worker {first.relay.owner} serves it already (lease {LEASE!r}). A second "
            "worker process would have an instance of its own, so this one does not start: "
            "serve the service from one worker process, or use Instancing.PER_SESSION or "
            "Instancing.PER_CALL to serve it from many."
        )
        async with first.client.session(Tally) as tally:
            await tally.add(2)
            assert await tally.total() == 2
    async with runtime(stores(), node) as third:  # a clean stop gave the lease up
        assert await third.client.datagrams(Tally).total() == 0  # a new worker, a new singleton


async def test_a_runtime_replacing_a_crashed_one_waits_for_its_lease(
    stores: Callable[[], Store],
) -> None:
    node = MemoryNode()
    crashed = runtime(stores(), node)
    await crashed.start()
    await crashed.abort()
    started = utcnow()
    async with runtime(stores(), node) as replacement:
        waited = utcnow() - started
        async with replacement.client.session(Tally) as tally:
            await tally.add(1)
            assert await tally.total() == 1
    assert waited < timedelta(seconds=3 * LEASE_S)


async def test_a_runtime_that_lost_its_lease_commits_nothing_more(
    stores: Callable[[], Store],
) -> None:
    store = stores()
    serving = runtime(store, MemoryNode())
    await serving.start()
    try:
        later = utcnow() + timedelta(hours=1)
        async with store.transaction() as uow:  # as if it had not renewed for an hour
            taken = await uow.leases.take(LEASE, "other-worker", later, later)
        assert taken.holder == "other-worker"
        tally = serving.client.session(Tally)
        await (await tally.open()).add(1)
        with pytest.raises(SingletonInUse) as lost:
            async with asyncio.timeout(5):
                await serving.wait()
        assert str(lost.value) == (
            "service 'SingleTallyService' uses Instancing.SINGLE and this worker lost its lease "
            f"{LEASE!r} to worker other-worker (it was not renewed in time): this worker stops "
            "serving it"
        )
        async with store.snapshot() as uow:
            message = await uow.messages.by_seq(tally.id, 1)
        assert message is not None
        assert message.status is MessageStatus.PENDING
    finally:
        await serving.abort()
