"""What the end-to-end tests observe: progress in the database, and the final verdict of a run.

Progress is read with plain queries over the store's tables, so it can be polled while the
processes work; the verdict reads every session and message of the plan through the store and
says in one failure everything that differs from the plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from durable_sessions.errors import StoreError
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import MessageStatus
from durable_sessions.model.topology import EndpointTopology
from durable_sessions.store.base import DeadLetterQuery
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.engine import translated_errors
from durable_sessions.store.sql.store import SqlStore
from tests.e2e.faults import queue_depths
from tests.e2e.plan import Plan

POLL_S = 0.1
SHOWN_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts over the whole database at one moment."""

    sessions: int = 0
    closed: int = 0
    sent: int = 0
    """Messages stored."""
    applied: int = 0
    """The sum of the sessions' ``last_applied_seq``."""
    duplicates: int = 0
    parked: int = 0
    outbox: int = 0


async def progress(store: SqlStore) -> Progress:
    """The counts now; raises :class:`StoreError` while the database is unavailable."""
    s = schema.sessions
    closed = sa.func.count().filter(s.c.state == SessionState.CLOSED)
    sums = [
        sa.func.coalesce(sa.func.sum(column), 0)
        for column in (s.c.last_applied_seq, s.c.duplicate_count, s.c.parked_count)
    ]
    with translated_errors():
        async with store.engine.connect() as conn:
            row = (await conn.execute(sa.select(sa.func.count(), closed, *sums))).one()
            sent = await _count(conn, schema.messages)
            outbox = await _count(conn, schema.outbox)
    sessions, closed, applied, duplicates, parked = (int(value) for value in row)
    return Progress(sessions, closed, sent, applied, duplicates, parked, outbox)


async def _count(conn: AsyncConnection, table: sa.Table) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def claims(store: SqlStore, owner: str) -> dict[int, datetime]:
    """The outbox entries ``owner`` holds a claim on, with the end of each claim."""
    o = schema.outbox
    query = sa.select(o.c.id, o.c.claimed_until).where(o.c.claimed_by == owner)
    with translated_errors():
        async with store.engine.connect() as conn:
            return {row.id: row.claimed_until for row in await conn.execute(query)}


async def until(
    probe: Callable[[], Awaitable[bool]], within_s: float, what: str, *, poll_s: float = POLL_S
) -> float:
    """Poll ``probe`` until it is true (store errors count as not yet); the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    last_error: StoreError | None = None
    while True:
        try:
            if await probe():
                return loop.time() - started
        except StoreError as e:
            last_error = e
        if loop.time() - started > within_s:
            cause = f" (last store error: {last_error})" if last_error else ""
            raise AssertionError(f"not reached within {within_s:g} s: {what}{cause}")
        await asyncio.sleep(poll_s)


async def all_applied(store: SqlStore, plan: Plan, within_s: float) -> float:
    """Wait until every planned session is closed with every message applied."""

    async def done() -> bool:
        now = await progress(store)
        return now.closed == len(plan.sessions) and now.applied == plan.message_count

    return await until(done, within_s, f"all {plan.message_count} messages applied")


async def queues_empty(topology: EndpointTopology, within_s: float) -> None:
    """Wait until no queue of the endpoint holds a message, ready or unacknowledged."""

    async def empty() -> bool:
        depths = await queue_depths(topology)
        return bool(depths) and all(depth == (0, 0) for depth in depths.values())

    await until(empty, within_s, f"the queues of {topology.endpoint} empty", poll_s=0.5)


async def settled(store: SqlStore, topology: EndpointTopology, within_s: float) -> None:
    """Wait until the outbox is empty and so is every queue of the endpoint on the broker."""

    async def outbox_empty() -> bool:
        return (await progress(store)).outbox == 0

    await until(outbox_empty, within_s, "the outbox empty")
    await queues_empty(topology, within_s)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The end of a run that matched its plan."""

    sessions: int
    messages: int
    duplicates: int
    """Deliveries the workers recognised as duplicates and dropped."""


async def verify(store: SqlStore, plan: Plan) -> Verdict:
    """Check the database against the plan, listing every difference in one failure.

    Every session is closed with its planned values as state and as the terminating call's
    result, ``last_applied_seq == last_sent_seq == applied_count ==`` its planned count, every
    message is applied, and there are no dead letters, no parked messages and no outbox entries.
    """
    problems: list[str] = []
    duplicates = 0
    async with store.snapshot() as uow:
        found = await uow.sessions.get_many(plan.sessions)
        counts = await uow.sessions.count_by_state()
        for session_id, values in plan.sessions.items():
            session = found.get(session_id)
            if session is None:
                problems.append(f"session {session_id} is missing")
                continue
            duplicates += session.duplicate_count
            n = plan.expected_seq(session_id)
            seen = (session.last_sent_seq, session.last_applied_seq, session.applied_count)
            if seen != (n, n, n):
                problems.append(f"{session_id}: sent/applied seq/applied count {seen}, not {n}")
            if session.instance_state != {"name": session_id, "values": values}:
                problems.append(f"{session_id}: state {session.instance_state}, not {values}")
            if (session.state, session.parked_count, session.dead_count) != (
                SessionState.CLOSED,
                0,
                0,
            ):
                problems.append(
                    f"{session_id}: {session.state}, {session.parked_count} parked, "
                    f"{session.dead_count} dead"
                )
            messages = await uow.messages.for_session(session_id, limit=n + 10)
            ids = [m.message_id for m in messages]
            if ids != [call.message_id for call in plan.calls(session_id)]:
                problems.append(f"{session_id}: messages {ids}")
            if any(m.status is not MessageStatus.APPLIED for m in messages):
                problems.append(f"{session_id}: statuses {[str(m.status) for m in messages]}")
            if messages and messages[-1].result != values:
                problems.append(f"{session_id}: finish returned {messages[-1].result}")
        if sum(counts.values()) != len(plan.sessions):
            problems.append(f"sessions by state {counts}, {len(plan.sessions)} planned")
        letters = await uow.dead_letters.find(DeadLetterQuery(limit=SHOWN_PROBLEMS))
        problems += [f"dead letter {d.message_id}: {d.reason} {d.detail}" for d in letters]
        outbox = await uow.outbox.stats()
        if outbox.count:
            problems.append(f"{outbox.count} outbox entries left")
    stored = (await progress(store)).sent
    if stored != plan.message_count:
        problems.append(f"{stored} messages stored, {plan.message_count} planned")
    shown = "\n".join(problems[:SHOWN_PROBLEMS])
    assert not problems, f"{len(problems)} differences from the plan:\n{shown}"
    return Verdict(len(plan.sessions), plan.message_count, duplicates)
