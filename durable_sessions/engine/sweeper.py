"""The sweeper: wakes WS-RM sequences, expires sessions, fires retries, repairs stalled sessions.

Each sweep finds candidates in a read-only snapshot, then handles each one in its own
transaction that locks the session and checks again, so any number of sweepers may run at once:
the second to get a lock finds nothing left to do.

- **Wake-ups**: stored protocol state with work of its own when its time comes is woken first,
  by the :class:`Wakeups` the sweeper is given: for the reliable-session binding, its WS-RM
  destination sequences (a silent one ends, and its session with it).
- **Expiry**: sessions idle past their inactivity timeout (nothing they were sent is pending)
  or past their time to live become ``expired``, and the messages they still hold (only the
  time to live ends a session with pending messages) become dead letters.
- **Retries**: a message whose retry cycle is due is published again.
- **Repair**: a session with unapplied messages whose watermark has not moved for a minute gets
  its next message published again, in case the broker lost the delivery. Sends schedule the
  check (``stall_check_at``, on the send side); the check clears it once nothing waits, or
  schedules the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from durable_sessions.engine.control import expire_session
from durable_sessions.engine.outbox import OutboxRelay, outbox_entry, publish_after_commit
from durable_sessions.errors import StoreError
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import (
    STALL_AFTER,
    MessageRecord,
    MessageStatus,
    SessionRecord,
    utcnow,
)
from durable_sessions.store.base import SessionLock, Store

log = logging.getLogger(__name__)

SWEEP_LIMIT = 200


class Wakeups(Protocol):
    """Stored state with work of its own to do when its time comes (WS-RM sequences)."""

    async def sweep(self, now: datetime) -> int:
        """Do what is due at ``now``; how many were woken."""
        ...


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did."""

    woken: int = 0
    expired: int = 0
    retried: int = 0
    repaired: int = 0


class Sweeper:
    """Periodic maintenance of sequences, sessions and messages; see the module docstring."""

    def __init__(
        self,
        store: Store,
        endpoints: Mapping[str, Endpoint],
        relay: OutboxRelay | None = None,
        *,
        interval_s: float = 1.0,
        wakeups: Wakeups | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.relay = relay
        self.wakeups = wakeups
        self.interval_s = interval_s
        self.clock = clock
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Sweep every ``interval_s`` until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except StoreError as e:
                log.warning("sweep failed, will try again: %s", e)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._stopping.wait()

    async def stop(self) -> None:
        """Stop after the current sweep."""
        self._stopping.set()

    async def sweep(self) -> SweepReport:
        """One sweep of sequence wake-ups, expiries, due retries and stalled sessions."""
        now = self.clock()
        # Sequences first, so a silent sequence ends its session with the WS-RM reason.
        woken = 0 if self.wakeups is None else await self.wakeups.sweep(now)
        async with self.store.snapshot() as uow:
            expiring = [s.id for s in await uow.sessions.expiring(now, SWEEP_LIMIT)]
            due = await uow.messages.retries_due(now, SWEEP_LIMIT)
            stall_checks = [s.id for s in await uow.sessions.stall_checks_due(now, SWEEP_LIMIT)]
        expired = 0
        for session_id in expiring:
            async with self.store.transaction() as tx:
                if await expire_session(tx, session_id, now) is not None:
                    expired += 1
                    log.info("session %s expired", session_id)
        retried = sum([await self._retry(message, now) for message in due])
        repaired = sum([await self._repair(session_id, now) for session_id in stall_checks])
        return SweepReport(woken, expired, retried, repaired)

    async def _retry(self, message: MessageRecord, now: datetime) -> bool:
        endpoint = self.endpoints.get(message.endpoint)
        if endpoint is None:
            return False  # another process serves that endpoint
        async with publish_after_commit(self.store, self.relay, now) as tx:
            uow = tx.uow
            if message.session_id is not None:
                await uow.sessions.get(message.session_id, lock=SessionLock.STATE)
            current = await uow.messages.get(message.message_id)
            if (
                current is None
                or current.status is not MessageStatus.PENDING
                or current.next_attempt_at is None
                or current.next_attempt_at > now
            ):
                return False
            current = dataclasses.replace(current, next_attempt_at=None, updated_at=now)
            await uow.messages.update(current)
            await tx.publish([outbox_entry(endpoint, current, now, tx.claim)])
        return True

    async def _repair(self, session_id: str, now: datetime) -> bool:
        """Check a session whose stall check is due; publish its next message if it stalled."""
        async with publish_after_commit(self.store, self.relay, now) as tx:
            uow = tx.uow
            session = await uow.sessions.get(session_id, lock=SessionLock.SENDS)
            if session is None or session.stall_check_at is None or session.stall_check_at > now:
                return False
            endpoint = self.endpoints.get(session.endpoint)
            if endpoint is None:
                return False  # another process serves that endpoint
            next_check = _next_stall_check(session, now)
            await uow.sessions.update(dataclasses.replace(session, stall_check_at=next_check))
            if next_check is None or _stalls_at(session) > now:
                return False
            if not session.state.applies_messages:
                return False  # faulted: an operator resumes it
            following = await uow.messages.by_seq(session.id, session.last_applied_seq + 1)
            if following is None or following.status not in (
                MessageStatus.PENDING,
                MessageStatus.PARKED,
            ):
                return False
            if following.next_attempt_at is not None and following.next_attempt_at > now:
                return False
            await tx.publish([outbox_entry(endpoint, following, now, tx.claim)])
        log.warning(
            "session %s made no progress for a while: published seq %s again",
            session_id,
            following.seq,
        )
        return True


def _stalls_at(session: SessionRecord) -> datetime:
    """When the session counts as stalled if its watermark does not move before."""
    return (session.progress_at or session.created_at) + STALL_AFTER


def _next_stall_check(session: SessionRecord, now: datetime) -> datetime | None:
    """When to check ``session`` again: never while nothing waits, else when it would stall,
    or a minute from now if it has stalled already."""
    if session.state.is_final or session.last_applied_seq >= session.last_sent_seq:
        return None
    stalls_at = _stalls_at(session)
    return stalls_at if stalls_at > now else now + STALL_AFTER
