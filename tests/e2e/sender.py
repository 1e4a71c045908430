"""The sender process: ``python -m tests.e2e.sender --plan PLAN [--report REPORT]``.

It opens the planned sessions and sends every planned call through
:class:`~durable_sessions.engine.client.Client` with an outbox relay of its own, so it is the
process that writes outbox entries already claimed and publishes them right after the commit.
Session ids and message ids come from the plan, so a sender killed at any point and started
again sends the same calls again, and the store answers each repeat with the original message.

A send that fails because the database went away is tried again with the same message id: when
the commit happened after all, the retry finds the message and writes nothing.

``--no-relay`` leaves the outbox entries to the relays of other processes;
``--stall-publishing-after N`` makes the relay hang in its publish once N entries were
confirmed, as a relay stuck on its broker connection would: the entries the sender writes after
that stay claimed by it, for a test to kill it with claims outstanding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

from durable_sessions.broker.base import Broker, Consumer
from durable_sessions.engine.client import Client
from durable_sessions.engine.outbox import OutboxRelay, OutboxTransaction
from durable_sessions.engine.sending import Sent, open_session, send
from durable_sessions.errors import BrokerError, StoreError
from durable_sessions.hosting.composition import build_store, connect_broker, served_endpoints
from durable_sessions.hosting.logs import setup_logging
from durable_sessions.model.endpoints import Endpoint, Endpoints
from durable_sessions.model.records import OutboxRecord, SessionRecord
from durable_sessions.model.topology import EndpointTopology
from durable_sessions.settings import Settings
from durable_sessions.store.base import Store
from tests.e2e.journal import SERVICE_PATH
from tests.e2e.plan import Call, Plan

log = logging.getLogger("tests.e2e.sender")
T = TypeVar("T")

RETRY_FOR_S = 120.0
"""How long a send keeps being retried while the database is unavailable."""


class WatchedBroker(Broker):
    """The sender's broker connection: counts what the broker confirmed before and after an error.

    With ``stall_after``, publishing hangs for good once that many messages were confirmed.
    """

    def __init__(self, inner: Broker, stall_after: int | None = None) -> None:
        self.inner = inner
        self.stall_after = stall_after
        self.confirmed = 0
        self.broker_errors = 0
        self.confirmed_after_error = 0

    async def declare(self, topology: EndpointTopology) -> None:
        await self.inner.declare(topology)

    async def declare_queue(self, name: str) -> None:
        await self.inner.declare_queue(name)

    async def delete_queue(self, name: str) -> None:
        await self.inner.delete_queue(name)

    async def publish(self, messages: Sequence[OutboxRecord]) -> list[bool]:
        if self.stall_after is not None and self.confirmed >= self.stall_after:
            log.warning("publishing stalls now, with %d entries to publish", len(messages))
            await asyncio.Event().wait()
        try:
            confirmed = await self.inner.publish(messages)
        except BrokerError:
            self.broker_errors += 1
            raise
        self.confirmed += sum(confirmed)
        if self.broker_errors:
            self.confirmed_after_error += sum(confirmed)
        return confirmed

    async def consume(self, queues: Sequence[str], prefetch: int) -> Consumer:
        return await self.inner.consume(queues, prefetch)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def retried(action: Callable[[], Awaitable[T]], what: str) -> T:
    """``action()``, again with backoff while the store fails, for up to :data:`RETRY_FOR_S`."""
    deadline = time.monotonic() + RETRY_FOR_S
    delay = 0.05
    while True:
        try:
            return await action()
        except StoreError as e:
            if time.monotonic() > deadline:
                raise
            log.warning("%s not sent, trying again in %.2f s: %s", what, delay, e)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)


class Sender:
    """Sends a plan's calls, each session's in order and many sessions at once."""

    def __init__(self, client: Client, endpoint: Endpoint, plan: Plan, concurrency: int) -> None:
        self.client = client
        self.endpoint = endpoint
        self.plan = plan
        self.slots = asyncio.Semaphore(concurrency)
        self.counts: Counter[str] = Counter(
            dict.fromkeys(("opened", "reopened", "new", "repeated"), 0)
        )

    async def run(self) -> None:
        """Send every session of the plan."""
        await asyncio.gather(*(self.conversation(sid) for sid in self.plan.sessions))

    async def conversation(self, session_id: str) -> None:
        """Open the session unless it exists, then send its calls in order."""
        async with self.slots:
            await retried(partial(self.client.transact, self._opener(session_id)), session_id)
            for call in self.plan.calls(session_id):
                sent = await retried(partial(self._send, session_id, call), call.message_id)
                self.counts["repeated" if sent.duplicate else "new"] += 1

    async def _send(self, session_id: str, call: Call) -> Sent:
        now = self.client.clock()
        return await self.client.transact(
            lambda tx: send(
                tx,
                self.endpoint,
                session_id,
                call.operation,
                call.args,
                now,
                message_id=call.message_id,
            )
        )

    def _opener(self, session_id: str) -> Callable[[OutboxTransaction], Awaitable[SessionRecord]]:
        async def open_unless_open(tx: OutboxTransaction) -> SessionRecord:
            existing = await tx.uow.sessions.get(session_id)
            if existing is not None:
                self.counts["reopened"] += 1
                return existing
            self.counts["opened"] += 1
            return await open_session(
                tx.uow,
                self.endpoint,
                self.client.clock(),
                inactivity_timeout_s=self.client.inactivity_timeout_s,
                ttl_s=self.client.ttl_s,
                session_id=session_id,
            )

        return open_unless_open


@asynccontextmanager
async def relaying(
    settings: Settings, store: Store, endpoint: Endpoint, args: argparse.Namespace
) -> AsyncIterator[tuple[OutboxRelay, WatchedBroker]]:
    """A running relay of this process; leaving the block waits until it published all."""
    broker = WatchedBroker(await connect_broker(settings), args.stall_publishing_after)
    try:
        await broker.declare(endpoint.topology)
        relay = OutboxRelay(
            store,
            broker,
            owner=args.relay_owner,
            lease_s=settings.outbox_lease_s,
            poll_interval_s=settings.outbox_poll_interval_s,
        )
        running = asyncio.create_task(relay.run())
        log.info("relay %s publishes to %s", relay.owner, endpoint.name)
        try:
            yield relay, broker
            await relay.drain(timeout_s=60.0)
        finally:
            await relay.stop()
            with contextlib.suppress(TimeoutError):  # a stalled relay never returns
                await asyncio.wait_for(running, 10.0)
    finally:
        await broker.close()


async def main(args: argparse.Namespace) -> dict[str, float]:
    """Send the plan, wait until the relay published it, and return the counts."""
    settings = Settings()
    plan = Plan.load(args.plan)
    [(endpoint, _)] = served_endpoints(settings, [SERVICE_PATH], plan.endpoint)
    started = time.monotonic()
    counts: dict[str, float] = {}
    async with AsyncExitStack() as stack:
        store = build_store(settings)
        stack.push_async_callback(store.close)
        relay = broker = None
        if not args.no_relay:
            relay, broker = await stack.enter_async_context(
                relaying(settings, store, endpoint, args)
            )
        sender = Sender(
            Client(store, Endpoints([endpoint]), relay), endpoint, plan, args.concurrency
        )
        log.info("sending %d sessions to %s", len(plan.sessions), endpoint.name)
        await sender.run()
    counts.update(sender.counts, seconds=time.monotonic() - started)
    if broker is not None:
        counts.update(
            published=broker.confirmed,
            broker_errors=broker.broker_errors,
            published_after_broker_error=broker.confirmed_after_error,
        )
    log.info("done: %s", counts)
    return counts


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of the sender."""
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.sender", description=__doc__)
    parser.add_argument("--plan", type=Path, required=True, help="the plan file to send")
    parser.add_argument("--report", type=Path, help="where to write the counts as JSON")
    parser.add_argument("--concurrency", type=int, default=16, help="sessions sent at once")
    parser.add_argument("--relay-owner", help="the name the relay claims outbox entries with")
    parser.add_argument(
        "--stall-publishing-after", type=int, metavar="N", help="hang the relay after N confirms"
    )
    parser.add_argument(
        "--no-relay", action="store_true", help="leave the outbox to other processes' relays"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    setup_logging("sender", Settings().log_level)
    report = asyncio.run(main(arguments))
    if arguments.report is not None:
        arguments.report.write_text(json.dumps(report))
