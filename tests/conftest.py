"""Shared fixtures: stores on memory, SQLite and PostgreSQL (migrated by Alembic), and whole
stacks of a store and a broker, on the twins and on the real services."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from durable_sessions.broker.base import Broker
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.store.base import Store
from durable_sessions.store.memory import MemoryStore
from durable_sessions.store.sql import migrate
from durable_sessions.store.sql.engine import create_engine
from durable_sessions.store.sql.store import SqlStore
from tests.services import BROKER_URL, POSTGRES_ADMIN_URL, require
from tests.stacks import Stack, delete_topology, empty_postgres

os.environ.setdefault("DS_LOG_LEVEL", "WARNING")
T = TypeVar("T")


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a thread of its own (safe inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _admin(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server."""
    require("PostgreSQL", POSTGRES_ADMIN_URL, 5432)
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def make_postgres_database(postgres_server: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases, all dropped at the end of the run."""
    created: list[str] = []

    def make() -> str:
        name = f"ds_test_{uuid.uuid4().hex[:12]}"
        run_blocking(_admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return postgres_server.rsplit("/", 1)[0] + f"/{name}"

    yield make
    for name in created:
        run_blocking(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url(make_postgres_database: Callable[[], str]) -> str:
    """A migrated PostgreSQL database shared by the run (tables are emptied per test)."""
    url = make_postgres_database()
    run_blocking(migrate.upgrade(url))
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    run_blocking(migrate.upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own."""
    path = tmp_path / "store.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The same store rules on every implementation: memory, SQLite, PostgreSQL."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
        await empty_postgres(url)
    sql_store = SqlStore.from_url(url)
    try:
        yield sql_store
    finally:
        await sql_store.close()


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("sqlite", marks=pytest.mark.rabbitmq),
        pytest.param("postgres", marks=[pytest.mark.rabbitmq, pytest.mark.postgres]),
    ]
)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The same behaviour on the twins and on the real services."""
    if request.param == "memory":
        node = MemoryNode()

        async def connect_memory() -> Broker:
            return node.connect()

        made = Stack("memory", MemoryStore(), connect_memory, node)
    else:
        require("RabbitMQ", BROKER_URL, 5672)
        if request.param == "sqlite":
            url = request.getfixturevalue("sqlite_url")
        else:
            url = request.getfixturevalue("postgres_url")
            await empty_postgres(url)
        store = SqlStore.from_url(url)

        async def connect_rabbit() -> Broker:
            return await RabbitBroker.connect(BROKER_URL)

        made = Stack(request.param, store, connect_rabbit)
    try:
        yield made
    finally:
        for runtime in made.runtimes:
            await runtime.stop()
        await made.exits.aclose()
        if made.kind != "memory":
            for topology in made.topologies:
                await delete_topology(topology)
        await made.store.close()
