"""B3 and B4: queued sessions end to end, from the Python client's send to the applied message.

This process runs the client and its outbox relay; the worker is a real ``durable_sessions
worker`` process. A message counts as applied when the store says so: throughput waits until the
sessions' ``applied_count`` add up, latency reads each message's ``applied_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from benchmarks.correctness import CorrectnessError, Tally, verify
from benchmarks.infrastructure import (
    BROKER_URL,
    WorkerProcess,
    delete_topology,
    insert_sessions,
    running_workers,
    say,
    scratch_database,
    unique_name,
    wait_for_consumers,
)
from benchmarks.recorder import PAYLOAD, SERVICE_PATH
from benchmarks.results import THROUGHPUT, Database, Result
from benchmarks.stats import percentile
from durable_sessions.engine.client import Client
from durable_sessions.engine.sending import SendRequest
from durable_sessions.hosting.composition import (
    build_store,
    connect_broker,
    relayed_client,
    served_endpoints,
)
from durable_sessions.model.endpoints import Endpoint, Endpoints
from durable_sessions.model.records import SessionRecord, new_id, utcnow
from durable_sessions.settings import Settings
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.store import SqlStore

APPLY_TIMEOUT_S = 300.0
POLL_S = 0.01
SESSION_TIMEOUT_S = 3600.0
LATENCY_WARM_UP = 0.1
"""The share of B4's messages, the first sent, left out of the percentiles."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """A scratch database, workers serving the benchmark service, and a client."""

    store: SqlStore
    client: Client
    endpoint: Endpoint
    workers: Sequence[WorkerProcess]


@contextlib.asynccontextmanager
async def deployed(database: Database, logs: Path, workers: int = 1) -> AsyncIterator[Deployment]:
    """Deploy on a scratch ``database``; remove the workers, queues and database afterwards."""
    async with scratch_database(database) as url:
        name = unique_name("bench").replace("_", "-")
        settings = Settings(database_url=url, broker_url=BROKER_URL, services=SERVICE_PATH)
        endpoint = served_endpoints(settings, [SERVICE_PATH], endpoint=name)[0][0]
        processes = [
            WorkerProcess(f"{name}-worker-{i}", url, SERVICE_PATH, name, logs)
            for i in range(1, workers + 1)
        ]
        store = build_store(settings)
        try:
            broker = await connect_broker(settings)
            try:
                await broker.declare(endpoint.topology)
                async with running_workers(processes):
                    queues = [q.name for q in endpoint.topology.session_queues]
                    await wait_for_consumers(queues, workers, 60.0)
                    async with relayed_client(
                        store, broker, Endpoints([endpoint]), settings
                    ) as client:
                        # As the worker does: the harness's own objects (earlier runs' results
                        # among them) are left out of full collections, whose pauses would
                        # otherwise show up as latency.
                        gc.freeze()
                        yield Deployment(store, client, endpoint, processes)
            except Exception:
                for process in processes:
                    say(f"--- end of {process.name}'s log:\n{process.tail()}")
                raise
            finally:
                await broker.close()
        finally:
            await store.close()
            await delete_topology(endpoint.topology)


async def open_sessions(store: SqlStore, endpoint: Endpoint, count: int) -> list[str]:
    """``count`` new open sessions on ``endpoint`` (set-up, bulk-inserted); their ids."""
    now = utcnow()
    sessions = [
        SessionRecord(
            id=new_id(),
            contract=endpoint.contract.name,
            endpoint=endpoint.name,
            created_at=now,
            inactivity_timeout_s=SESSION_TIMEOUT_S,
            last_activity_at=now,
            updated_at=now,
            progress_at=now,
        )
        for _ in range(count)
    ]
    await insert_sessions(store, sessions)
    return [s.id for s in sessions]


def record(endpoint: Endpoint, session_id: str, n: int) -> SendRequest:
    """The request that sends message number ``n`` of a session."""
    return SendRequest(endpoint, session_id, "record", {"n": n, "payload": PAYLOAD})


async def send_numbers(client: Client, endpoint: Endpoint, session_id: str, count: int) -> None:
    """Send messages 1..``count`` to a session, each once the previous one is durable."""
    for n in range(1, count + 1):
        await client.send(record(endpoint, session_id, n))


async def applied_total(store: SqlStore) -> int:
    """How many messages the store has applied, over all sessions."""
    async with store.engine.connect() as conn:
        total = await conn.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(schema.sessions.c.applied_count), 0))
        )
    return int(total or 0)


async def wait_applied(store: SqlStore, total: int, timeout_s: float = APPLY_TIMEOUT_S) -> None:
    """Wait until ``total`` messages are applied; an error names how many are missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (applied := await applied_total(store)) < total:
        if loop.time() > deadline:
            raise CorrectnessError(
                f"{total - applied} of {total} messages not applied within {timeout_s:g} s"
            )
        await asyncio.sleep(POLL_S)


async def tallies(store: SqlStore) -> dict[str, Tally]:
    """What the benchmark service recorded in each session."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(schema.sessions.c.id, schema.sessions.c.instance_state))
        return {
            session_id: Tally(state["count"], state["last"], state["disorder"])
            for session_id, state in rows
            if state is not None
        }


async def throughput(
    database: Database,
    session_counts: Sequence[int],
    messages_for: Callable[[int], int],
    logs: Path,
) -> list[Result]:
    """B3: for each session count, send the messages and time them until all are applied."""
    results = []
    async with deployed(database, logs) as deployment:
        store, client, endpoint = deployment.store, deployment.client, deployment.endpoint
        sent: dict[str, int] = {}
        for sessions in session_counts:
            per_session = max(1, messages_for(sessions) // sessions)
            ids = await open_sessions(store, endpoint, sessions)
            before = await applied_total(store)
            started = time.monotonic()
            await asyncio.gather(*(send_numbers(client, endpoint, s, per_session) for s in ids))
            await wait_applied(store, before + sessions * per_session)
            elapsed = time.monotonic() - started
            sent.update(dict.fromkeys(ids, per_session))
            verify(f"B3 {database} {sessions} sessions", sent, await tallies(store))
            rate = sessions * per_session / elapsed
            say(f"  B3 {database:<10} {sessions:>5} sessions: {rate:8,.0f} msgs/s")
            results.append(Result("B3", {THROUGHPUT: rate}, database, sessions))
    return results


async def latency(
    database: Database, rate: float, sessions: int, duration_s: float, logs: Path
) -> Result:
    """B4: send at a fixed ``rate`` over ``sessions``; percentiles of scheduled send to applied.

    Each message is timed from when it was due, not from when the sender got to it, so a
    stalled sender cannot hide the wait (no coordinated omission).
    """
    total = max(sessions, int(rate * duration_s))
    async with deployed(database, logs) as deployment:
        store, client, endpoint = deployment.store, deployment.client, deployment.endpoint
        ids = await open_sessions(store, endpoint, sessions)
        loop = asyncio.get_running_loop()
        due: dict[str, float] = {}
        start_loop, start_wall = loop.time() + 0.2, time.time() + 0.2

        async def sender(index: int, session_id: str) -> None:
            for n, i in enumerate(range(index, total, sessions), start=1):
                offset = i / rate
                await asyncio.sleep(max(0.0, start_loop + offset - loop.time()))
                sent = await client.send(record(endpoint, session_id, n))
                due[sent.message.message_id] = start_wall + offset

        await asyncio.gather(*(sender(i, s) for i, s in enumerate(ids)))
        await wait_applied(store, total)
        verify(
            f"B4 {database}",
            {s: len(range(i, total, sessions)) for i, s in enumerate(ids)},
            await tallies(store),
        )
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(schema.messages.c.message_id, schema.messages.c.applied_at)
                )
            ).all()
    applied = {message_id: at.timestamp() for message_id, at in rows}
    first_counted = start_wall + LATENCY_WARM_UP * total / rate
    waits = [(applied[m] - t) * 1000 for m, t in due.items() if t >= first_counted]
    metrics = {
        "offered_per_s": rate,
        "achieved_per_s": total / (max(applied.values()) - start_wall),
        "p50_ms": percentile(waits, 50),
        "p95_ms": percentile(waits, 95),
        "p99_ms": percentile(waits, 99),
    }
    say(
        f"  B4 {database:<10} {rate:,.0f} msgs/s offered: p50 {metrics['p50_ms']:.1f} ms, "
        f"p95 {metrics['p95_ms']:.1f} ms, p99 {metrics['p99_ms']:.1f} ms"
    )
    return Result("B4", metrics, database, sessions)
