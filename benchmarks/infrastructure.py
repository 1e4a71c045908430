"""Scratch databases, broker clean-up and real worker processes for the scenarios.

Everything a scenario creates (databases, files, queues, exchanges, processes) is made by a
context manager here and removed when the block ends, also when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import aio_pika
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.results import Database
from durable_sessions.model.records import SessionRecord
from durable_sessions.model.topology import EndpointTopology
from durable_sessions.store.sql import migrate
from durable_sessions.store.sql.store import SqlStore

BROKER_URL = os.environ.get("DS_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get(
    "DS_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parents[1]


def say(text: str) -> None:
    """Report progress on stderr (stdout carries the report)."""
    print(text, file=sys.stderr, flush=True)


def unique_name(prefix: str) -> str:
    """A fresh lowercase name for a queue, endpoint or database."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def scratch_database(kind: Database, *, migrated: bool = True) -> AsyncIterator[str]:
    """The URL of a new empty database of ``kind`` (migrated unless told), dropped afterwards."""
    if kind is Database.SQLITE:
        folder = tempfile.mkdtemp(prefix="ds-bench-")
        try:
            url = f"sqlite+aiosqlite:///{folder}/bench.db"
            if migrated:
                await migrate.upgrade(url)
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = unique_name("ds_bench")
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = sa.make_url(POSTGRES_URL).set(database=name).render_as_string(False)
            if migrated:
                await migrate.upgrade(url)
            yield url
        finally:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


INSERT_CHUNK = 5000


async def insert_sessions(store: SqlStore, sessions: Iterable[SessionRecord]) -> None:
    """Insert sessions in large transactions (set-up, not measured)."""
    pending = list(sessions)
    for start in range(0, len(pending), INSERT_CHUNK):
        async with store.transaction() as uow:
            await uow.sessions.add_many(pending[start : start + INSERT_CHUNK])


async def delete_queues(names: Sequence[str], exchanges: Sequence[str] = ()) -> None:
    """Delete queues and exchanges from RabbitMQ (missing ones are fine)."""
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


async def delete_topology(topology: EndpointTopology) -> None:
    """Delete an endpoint's queues and exchanges."""
    await delete_queues(
        [q.name for q in (*topology.queues, topology.dead_letter_queue)],
        [topology.exchange, topology.dead_letter_exchange],
    )


async def wait_for_consumers(queues: Sequence[str], consumers: int, timeout_s: float) -> None:
    """Wait until every queue has at least ``consumers`` consumers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        while True:
            counts = []
            for name in queues:
                queue = await channel.declare_queue(name, passive=True)
                counts.append(queue.declaration_result.consumer_count or 0)
            if min(counts) >= consumers:
                return
            if loop.time() > deadline:
                raise TimeoutError(
                    f"queues {list(queues)} have {counts} consumers, not {consumers}"
                )
            await asyncio.sleep(0.05)


class WorkerProcess:
    """``python -m durable_sessions worker`` serving the benchmark service on one endpoint."""

    def __init__(self, name: str, database_url: str, service: str, endpoint: str, logs: Path):
        self.name = name
        self.argv = [
            sys.executable,
            *("-m", "durable_sessions", "worker", "--service", service, "--endpoint", endpoint),
        ]
        self.env = {
            **os.environ,
            "DS_DATABASE_URL": database_url,
            "DS_BROKER_URL": BROKER_URL,
            "DS_SERVICES": service,
            "DS_LOG_LEVEL": "WARNING",
        }
        self.log_path = logs / f"{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (once started)."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._popen.pid

    def start(self) -> None:
        """Start the worker, its output going to its log file."""
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """``kill -9`` the worker and reap it."""
        if self._popen is not None and self._popen.poll() is None:
            os.kill(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout=10)

    async def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then ``kill -9`` if it has not exited within ``timeout_s``."""
        if self._popen is None or self._popen.poll() is not None:
            return
        self._popen.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self._popen.wait, timeout_s)
        self.kill()

    def tail(self, lines: int = 20) -> str:
        """The end of the worker's log, to show when a scenario fails."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def running_workers(workers: Sequence[WorkerProcess]) -> AsyncIterator[None]:
    """Start the workers; stop any still running when the block ends."""
    try:
        for worker in workers:
            worker.start()
        yield
    finally:
        for worker in workers:
            await worker.stop()
