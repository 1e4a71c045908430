"""B1 and B2: what the broker alone, and a hand-written durable consumer, achieve.

Both run in two processes, as B3 does (client in this process, worker in another): this process
publishes 512-byte persistent messages with publisher confirms (a window of
:data:`CONFIRM_WINDOW` unconfirmed) to a quorum queue, and a child process consumes them with
manual acks. In B1 the child only acks; in B2 it inserts each message into an inbox table with a
unique ``(session_id, seq)`` key in its own transaction, commits, then acks.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_module
import time
from collections.abc import Mapping
from typing import Any

import aio_pika
import sqlalchemy as sa

from benchmarks.correctness import Tally, observe, tally_of, verify
from benchmarks.infrastructure import (
    BROKER_URL,
    delete_queues,
    scratch_database,
    unique_name,
)
from benchmarks.results import THROUGHPUT, Database, Result
from durable_sessions.store.sql.engine import create_engine

CONFIRM_WINDOW = 256
PREFETCH = 256
MESSAGE_BYTES = 512
SESSIONS = 256
CHILD_TIMEOUT_S = 180.0

_inbox_metadata = sa.MetaData()
inbox = sa.Table(
    "bench_inbox",
    _inbox_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(36), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("session_id", "seq"),
)


def body_of(session: str, n: int) -> bytes:
    """A 512-byte message body naming its session and number."""
    return f"{session}:{n}:".encode().ljust(MESSAGE_BYTES, b"x")


def parse(body: bytes) -> tuple[str, int]:
    """The session and number of a body made by :func:`body_of`."""
    session, n, _ = body.split(b":", 2)
    return session.decode(), int(n)


def plan(messages: int) -> list[tuple[str, int]]:
    """``messages`` (session, number) pairs, round robin over :data:`SESSIONS` sessions."""
    return [(f"s{i % SESSIONS}", i // SESSIONS + 1) for i in range(messages)]


def sent_counts(pairs: list[tuple[str, int]]) -> dict[str, int]:
    """How many messages each session was sent."""
    counts: dict[str, int] = {}
    for session, _ in pairs:
        counts[session] = counts.get(session, 0) + 1
    return counts


async def publish(queue_name: str, pairs: list[tuple[str, int]]) -> None:
    """Publish persistent messages with confirms, keeping :data:`CONFIRM_WINDOW` in flight."""
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        pending: set[asyncio.Task[Any]] = set()
        for session, n in pairs:
            message = aio_pika.Message(
                body_of(session, n), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            pending.add(asyncio.create_task(exchange.publish(message, queue_name)))
            if len(pending) >= CONFIRM_WINDOW:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        for task in pending:
            await task


async def _consume(queue_name: str, expected: int, database_url: str | None, results: Any) -> None:
    """The child's work: consume ``expected`` messages, then report the end time and tallies."""
    engine = None if database_url is None else create_engine(database_url, pool_size=1)
    tallies: dict[str, Tally] = {}
    finished_at = 0.0
    applied = 0

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal applied, finished_at
        session, n = parse(message.body)
        if engine is None:
            tallies[session] = observe(tallies.get(session, Tally()), n)
        else:
            try:
                async with engine.begin() as conn:
                    await conn.execute(
                        inbox.insert().values(session_id=session, seq=n, body=message.body)
                    )
            except sa.exc.IntegrityError:
                # A redelivery of a message already committed: ack it, apply nothing.
                await message.ack()
                return
        await message.ack()
        applied += 1
        if applied == expected:
            finished_at = time.monotonic()

    try:
        connection = await aio_pika.connect(BROKER_URL)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            queue = await channel.get_queue(queue_name)
            async with queue.iterator() as messages:
                results.put(("ready",))
                async for message in messages:
                    await handle(message)
                    if applied == expected:
                        break
        if engine is not None:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(inbox.c.session_id, inbox.c.seq).order_by(inbox.c.id)
                )
                seen: dict[str, list[int]] = {}
                for session, seq in rows:
                    seen.setdefault(session, []).append(seq)
            tallies = {session: tally_of(numbers) for session, numbers in seen.items()}
    finally:
        if engine is not None:
            await engine.dispose()
    results.put(
        ("done", finished_at, {s: (t.count, t.last, t.disorder) for s, t in tallies.items()})
    )


def consumer_main(queue_name: str, expected: int, database_url: str | None, results: Any) -> None:
    """Entry point of the consumer process."""
    asyncio.run(_consume(queue_name, expected, database_url, results))


async def _receive(results: Any, child: Any, timeout_s: float) -> tuple[Any, ...]:
    """The consumer's next report; an error if it exits or says nothing for ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            item: tuple[Any, ...] = await loop.run_in_executor(None, results.get, True, 0.2)
        except queue_module.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the consumer process exited ({child.exitcode})") from None
            continue
        return item
    raise TimeoutError(f"the consumer process said nothing for {timeout_s:g} s")


async def _run(scenario: str, messages: int, database: Database | None, url: str | None) -> Result:
    queue_name = unique_name("ds-bench-raw")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    pairs = plan(messages)
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
    child = context.Process(
        target=consumer_main, args=(queue_name, messages, url, results), daemon=True
    )
    try:
        child.start()
        await _receive(results, child, 60.0)
        started = time.monotonic()
        await publish(queue_name, pairs)
        _, finished_at, raw = await _receive(results, child, CHILD_TIMEOUT_S)
        child.join(timeout=30)
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
        results.close()
        await delete_queues([queue_name])
    seen: Mapping[str, Tally] = {s: Tally(*values) for s, values in raw.items()}
    verify(f"{scenario} {database or ''}".strip(), sent_counts(pairs), seen)
    return Result(
        scenario, {THROUGHPUT: messages / (finished_at - started)}, database=database or ""
    )


async def raw_broker(messages: int) -> Result:
    """B1: publish with confirms and consume with manual acks, nothing else."""
    return await _run("B1", messages, None, None)


async def hand_written(database: Database, messages: int) -> Result:
    """B2: consume, one transaction per message with a unique (session, seq), then ack."""
    async with scratch_database(database, migrated=False) as url:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_inbox_metadata.create_all)
        finally:
            await engine.dispose()
        return await _run("B2", messages, database, url)
