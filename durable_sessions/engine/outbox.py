"""The outbox: entries that publish messages, the transactions that write them, and the relay.

A transaction that writes outbox entries is an :class:`OutboxTransaction`, opened with
:func:`publish_after_commit`: its entries are written already claimed by this process's relay
and handed to it once the transaction commits (never before: an entry whose transaction rolls
back must not be published), so they go out at once.

The relay publishes the entries handed to it, then removes them once the broker confirmed them;
confirmed entries are removed by a task of their own, those of every ``remove_every_s``
together, while the next ones are published. Every ``poll_interval_s`` the relay also claims
entries nobody holds — written by a process without a relay, or left behind by one that crashed
once its lease ran out — so nothing stays in the outbox. Any number of relays may run: claims
keep them apart, and a message published twice is a duplicate the workers drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from durable_sessions.broker.base import Broker
from durable_sessions.errors import BrokerError, StoreError
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import MessageRecord, OutboxRecord, new_id, utcnow
from durable_sessions.model.topology import DATAGRAM_KEY
from durable_sessions.model.wire import CONTENT_TYPE, WireMessage
from durable_sessions.store.base import Store, UnitOfWork

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class Claim:
    """Outbox entries written already claimed by a relay that will publish them right away."""

    owner: str
    until: datetime


def outbox_entry(
    endpoint: Endpoint, message: MessageRecord, now: datetime, claim: Claim | None = None
) -> OutboxRecord:
    """The outbox entry that publishes ``message`` to its endpoint, held by ``claim`` if given."""
    topology = endpoint.topology
    key = (
        DATAGRAM_KEY
        if message.session_id is None
        else topology.session_routing_key(message.session_id)
    )
    return OutboxRecord(
        exchange=topology.exchange,
        routing_key=key,
        body=WireMessage.of(message).encode(),
        created_at=now,
        headers={"content-type": CONTENT_TYPE},
        message_id=message.message_id,
        claimed_by=None if claim is None else claim.owner,
        claimed_until=None if claim is None else claim.until,
    )


@dataclass(slots=True)
class OutboxTransaction:
    """A unit of work whose outbox entries are published once it commits.

    Write entries with :attr:`claim` (:func:`outbox_entry` takes it) and through
    :meth:`publish`. Made by :func:`publish_after_commit`; one made by hand over a plain unit of
    work leaves its entries to the relays' polls.
    """

    uow: UnitOfWork
    claim: Claim | None = None
    """The claim of the relay that publishes the entries after the commit; None without one."""
    published: list[OutboxRecord] = field(default_factory=list)
    """The entries written so far, with their ids."""

    async def publish(self, entries: Sequence[OutboxRecord]) -> list[OutboxRecord]:
        """Write ``entries`` to the outbox; return them with their ids, in the same order."""
        stored = await self.uow.outbox.add_many(entries)
        self.published.extend(stored)
        return stored


@contextlib.asynccontextmanager
async def publish_after_commit(
    store: Store, relay: OutboxRelay | None, now: datetime
) -> AsyncIterator[OutboxTransaction]:
    """A transaction of ``store`` whose outbox entries go to ``relay`` once it has committed.

    Leaving the block commits; an exception rolls back and hands nothing over.
    """
    async with store.transaction() as uow:
        tx = OutboxTransaction(uow, None if relay is None else relay.claim(now))
        yield tx
    if relay is not None:
        relay.submit(tx.published)


class OutboxRelay:
    """Publishes the outbox to the broker; see the module docstring."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        *,
        owner: str | None = None,
        lease_s: float = 30.0,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        remove_every_s: float = 0.05,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.broker = broker
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.lease = timedelta(seconds=lease_s)
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.remove_every_s = remove_every_s
        self.clock = clock
        self.published = 0
        self._pending: list[OutboxRecord] = []
        self._published: list[int] = []
        self._removing: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    def claim(self, now: datetime) -> Claim:
        """The claim to write entries with when this relay will publish them after the commit."""
        return Claim(self.owner, now + self.lease)

    def submit(self, entries: Sequence[OutboxRecord]) -> None:
        """Publish entries that this relay's claim holds, as soon as possible."""
        if entries:
            self._pending.extend(entries)
            self._idle.clear()
            self._wake.set()

    async def run(self) -> None:
        """Publish until :meth:`stop`."""
        try:
            await self._run()
        except asyncio.CancelledError:
            if self._removing is not None:
                self._removing.cancel()
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        backoff = 0.0
        while not self._stopping:
            if backoff:
                await asyncio.sleep(backoff)
            ok = True
            if self._pending:
                ok = await self._publish_pending()
            if ok and loop.time() >= next_poll:
                ok = await self._poll()
                next_poll = loop.time() + self.poll_interval_s
            backoff = 0.0 if ok else min(MAX_BACKOFF_S, max(0.05, backoff * 2))
            if not self._pending:
                # Idle once the confirmed entries are removed too: the removal wakes this loop.
                self._wake.clear()
                if self._removing is None or self._removing.done():
                    self._idle.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_poll - loop.time())):
                        await self._wake.wait()
        await self._removed()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until everything submitted so far is published (or give up after a while)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()

    async def stop(self) -> None:
        """Stop after the current step; unpublished entries stay in the outbox."""
        self._stopping = True
        self._wake.set()

    async def _publish_pending(self) -> bool:
        batch = self._pending[: self.batch_size]
        del self._pending[: self.batch_size]
        now = self.clock()
        live = [e for e in batch if e.claimed_until is None or e.claimed_until > now]
        ok = await self._publish(live)
        if not ok:
            self._pending[:0] = live
        return ok

    async def _poll(self) -> bool:
        now = self.clock()
        try:
            async with self.store.transaction() as uow:
                claimed = await uow.outbox.claim(self.owner, now, now + self.lease, self.batch_size)
        except StoreError as e:
            log.warning("outbox relay cannot claim entries: %s", e)
            return False
        if len(claimed) == self.batch_size:
            self._wake.set()
        return await self._publish(claimed)

    async def _publish(self, entries: list[OutboxRecord]) -> bool:
        """Publish, then remove what the broker confirmed; False when it should be tried again."""
        if not entries:
            return True
        try:
            confirmed = await self.broker.publish(entries)
        except BrokerError as e:
            log.warning("outbox relay cannot publish %d entries: %s", len(entries), e)
            return False
        done = [e.id for e, ok in zip(entries, confirmed, strict=True) if ok and e.id is not None]
        refused = len(entries) - len(done)
        if refused:
            log.error(
                "the broker refused %d of %d outbox entries (unroutable or nacked); they stay "
                "in the outbox and are retried when their claim ends",
                refused,
                len(entries),
            )
        self.published += len(done)
        self._published += done
        if self._removing is None or self._removing.done():
            self._removing = asyncio.create_task(self._remove_published(), name="outbox-remove")
        return True

    async def _remove_published(self) -> None:
        try:
            while self._published:
                if not self._stopping:
                    # The confirmations of several publishes go in one transaction.
                    await asyncio.sleep(self.remove_every_s)
                ids, self._published = self._published, []
                try:
                    async with self.store.transaction() as uow:
                        await uow.outbox.remove(ids)
                except StoreError as e:
                    # They were published; leaving them only means publishing them once more.
                    log.warning("outbox relay cannot remove %d published entries: %s", len(ids), e)
        finally:
            self._wake.set()  # the run loop may be waiting for this to call itself idle

    async def _removed(self) -> None:
        """Wait until every confirmed entry is removed from the outbox."""
        if self._removing is not None:
            await self._removing
