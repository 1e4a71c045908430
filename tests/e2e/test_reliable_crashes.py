"""A WS-RM sequence survives ``kill -9`` of either end, with real processes.

A worker process applies the journal service; the destination is ``durable-sessions api``
serving ``/v1/soap/{endpoint}`` on PostgreSQL (over AMQP: the worker, on the endpoint's WS-RM
queue); the source is a process of its own (:mod:`tests.e2e.reliable_source`) keeping its
sequence in a SQLite file. Whichever end is killed mid-sequence, the journal must end holding
exactly the values written, in order: every message applied once, none lost, none twice.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import OutboxRecord, utcnow
from durable_sessions.reliable.amqp import queue_address, reply_queue
from durable_sessions.reliable.host import SEQUENCE_LABEL
from durable_sessions.store.base import DeadLetterQuery, SessionQuery
from durable_sessions.store.sql import migrate
from durable_sessions.store.sql.store import SqlStore
from tests.e2e.conftest import Run
from tests.e2e.processes import POLL_S, Proc
from tests.services import BROKER_URL
from tests.system.test_up_and_demo import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.timeout(90)]

KEY = "e2e-reliable-key"
WRITES = 150


async def answering(api: Proc, port: int, within_s: float = 30.0) -> None:
    """Wait until the API process answers its health probe."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not api.running:
                raise AssertionError(f"the API exited ({api.returncode}):\n{api.tail()}")
            if loop.time() > deadline:
                raise TimeoutError(f"the API did not answer within {within_s:g} s")
            await asyncio.sleep(POLL_S)


async def destination(run: Run) -> tuple[Proc, int, list[str]]:
    """A worker and the API serving the run's endpoint; the API, its port, the source's options."""
    run.fleet.worker()
    await run.fleet.serving()
    port = free_port()
    api = run.fleet.api(port, KEY)
    await answering(api, port)
    store_url = f"sqlite+aiosqlite:///{run.directory / 'source.db'}"
    await migrate.upgrade(store_url)
    options = [
        *("--url", f"http://127.0.0.1:{port}/v1/soap/{run.endpoint}"),
        *("--key", KEY, "--store", store_url, "--writes", str(WRITES)),
    ]
    return api, port, options


def identifier_of(source: Proc) -> str:
    """The sequence a source process printed."""
    (line,) = {line for line in source.log().splitlines() if line.startswith("sequence ")}
    return line.removeprefix("sequence ")


def finished(source: Proc) -> list[int]:
    """What ``finish`` returned to the source process."""
    (line,) = [line for line in source.log().splitlines() if line.startswith("finished ")]
    values: list[int] = json.loads(line.removeprefix("finished "))
    return values


async def assert_journal_exact(run: Run, identifier: str) -> None:
    """The sequence's session applied begin, every write once and in order, and finish."""
    async with run.store.snapshot() as uow:
        (session,) = await uow.sessions.find(SessionQuery(labels={SEQUENCE_LABEL: identifier}))
        dead = await uow.dead_letters.find(DeadLetterQuery(session_id=session.id))
    assert session.state is SessionState.CLOSED
    assert session.instance_state == {"name": "reliable", "values": list(range(WRITES))}
    assert (session.applied_count, session.dead_count) == (WRITES + 2, 0)
    assert dead == []


async def test_killing_the_destination_mid_sequence_loses_nothing(run: Run) -> None:
    api, port, options = await destination(run)
    source = run.fleet.reliable_source(*options)
    await source.logged(f"wrote {WRITES // 3}")
    api.kill()
    assert api.returncode == -9
    assert source.running, "the sequence ended before the destination was killed"
    api.start()
    await answering(api, port)
    assert await source.wait(60) == 0, source.tail()
    assert finished(source) == list(range(WRITES))
    await assert_journal_exact(run, identifier_of(source))


async def test_killing_the_source_mid_sequence_resumes_from_its_store(run: Run) -> None:
    _, _, options = await destination(run)
    first = run.fleet.reliable_source(*options)
    await first.logged(f"wrote {WRITES // 3}")
    first.kill()
    assert first.returncode == -9
    assert not first.count("finished")
    identifier = identifier_of(first)
    resumed = run.fleet.reliable_source(*options, "--resume", identifier)
    assert await resumed.wait(60) == 0, resumed.tail()
    assert identifier_of(resumed) == identifier
    assert finished(resumed) == list(range(WRITES))
    await assert_journal_exact(run, identifier)


async def delete_reply_queue(store_url: str, identifier: str) -> bool:
    """Delete the reply queue of a stored AMQP source sequence; whether it was there still."""
    store = SqlStore.from_url(store_url)
    try:
        async with store.snapshot() as uow:
            record = await uow.sequences.get(identifier)
    finally:
        await store.close()
    assert record is not None
    assert record.create_message_id is not None
    queue = reply_queue(record.create_message_id)
    probe = OutboxRecord(exchange="", routing_key=queue, body=b"probe", created_at=utcnow())
    broker = await RabbitBroker.connect(BROKER_URL)
    try:
        (there,) = await broker.publish([probe])
        await broker.delete_queue(queue)
    finally:
        await broker.close()
    return there


async def test_killing_the_worker_mid_sequence_over_amqp_loses_nothing(run: Run) -> None:
    worker = run.fleet.worker()
    await run.fleet.serving()
    store_url = f"sqlite+aiosqlite:///{run.directory / 'source.db'}"
    await migrate.upgrade(store_url)
    address = queue_address(run.topology.wsrm_queue.name)
    options = ["--url", address, "--broker", BROKER_URL, "--store", store_url]
    source = run.fleet.reliable_source(*options, "--writes", str(WRITES))
    left: bool | None = None
    try:
        await source.logged(f"wrote {WRITES // 3}")
        worker.kill()
        assert worker.returncode == -9
        assert source.running, "the sequence ended before the worker was killed"
        worker.start()
        await run.fleet.serving()
        assert await source.wait(60) == 0, source.tail()
        assert finished(source) == list(range(WRITES))
        await assert_journal_exact(run, identifier_of(source))
    finally:
        source.kill()
        if source.count("sequence "):
            left = await delete_reply_queue(store_url, identifier_of(source))
    assert left is False, "the reply queue outlived its sequence"
