"""Session control: close, terminate, resume and expire.

Each function runs inside the caller's unit of work, locks what it changes and moves the
session through :mod:`durable_sessions.model.lifecycle` (an illegal move raises
:class:`~durable_sessions.errors.IllegalTransition`). Messages a session still holds when it is
terminated or expires become dead letters. Functions that publish a message again write it in
the caller's :class:`~durable_sessions.engine.outbox.OutboxTransaction`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import StrEnum

from durable_sessions.engine.outbox import OutboxTransaction, outbox_entry
from durable_sessions.errors import SessionNotFound
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.lifecycle import SessionEvent, SessionState
from durable_sessions.model.records import (
    DeadLetterReason,
    MessageRecord,
    MessageStatus,
    SessionRecord,
    dead_letter_of,
)
from durable_sessions.store.base import SessionLock, UnitOfWork

_UNSETTLED = (MessageStatus.PENDING, MessageStatus.PARKED, MessageStatus.FAILED)


class ResumeAction(StrEnum):
    """How an operator resumes a faulted session."""

    RETRY = "retry"
    """Try the failed message again, with fresh retries."""
    SKIP = "skip"
    """Dead-letter the failed message and go on with the next one."""


async def _locked(uow: UnitOfWork, session_id: str) -> SessionRecord:
    """The session with both parts locked: a state change here may stop its senders."""
    session = await uow.sessions.get(session_id, lock=SessionLock.BOTH)
    if session is None:
        raise SessionNotFound(session_id)
    return session


async def close_session(uow: UnitOfWork, session_id: str, now: datetime) -> SessionRecord:
    """Close gracefully: refuse new messages, apply what is pending, then be closed.

    Closing a session that is already closing or closed changes nothing.
    """
    session = await _locked(uow, session_id)
    if session.state in (SessionState.CLOSING, SessionState.CLOSED):
        return session
    return await uow.sessions.update(session.moved(SessionEvent.CLOSE, now).drained(now))


async def terminate_session(
    uow: UnitOfWork, session_id: str, reason: str, now: datetime
) -> SessionRecord:
    """Abort: the session is terminated and every message it still holds is dead-lettered."""
    session = await _locked(uow, session_id)
    ended = session.moved(SessionEvent.TERMINATE, now)
    ended = await dead_letter_unsettled(
        uow, ended, DeadLetterReason.TERMINATED, f"session terminated: {reason}", now
    )
    return await uow.sessions.update(dataclasses.replace(ended, end_reason=reason))


async def expire_session(uow: UnitOfWork, session_id: str, now: datetime) -> SessionRecord | None:
    """Expire a session past its deadline; None if it is not (any more) due."""
    session = await _locked(uow, session_id)
    if session.expires_at is None or session.expires_at > now:
        return None
    cause = _expiry_cause(session, now)
    ended = session.moved(SessionEvent.EXPIRE, now)
    ended = await dead_letter_unsettled(uow, ended, DeadLetterReason.EXPIRED, cause, now)
    return await uow.sessions.update(dataclasses.replace(ended, end_reason=cause))


def _expiry_cause(session: SessionRecord, now: datetime) -> str:
    if session.ttl_s is not None and (now - session.created_at).total_seconds() >= session.ttl_s:
        return f"the time to live of {session.ttl_s:g} s has been exceeded"
    return f"the inactivity timeout of {session.inactivity_timeout_s:g} s has been exceeded"


async def dead_letter_unsettled(
    uow: UnitOfWork,
    session: SessionRecord,
    reason: DeadLetterReason,
    detail: str,
    now: datetime,
) -> SessionRecord:
    """Dead-letter every message of ``session`` not applied yet; return updated counters."""
    count = 0
    after = session.last_applied_seq
    while batch := await uow.messages.for_session(
        session.id, statuses=_UNSETTLED, after_seq=after, limit=500
    ):
        for message in batch:
            await _kill(uow, message, reason, detail, now)
        count += len(batch)
        after = batch[-1].seq or after
    return dataclasses.replace(
        session, dead_count=session.dead_count + count, parked_count=0, updated_at=now
    )


async def _kill(
    uow: UnitOfWork,
    message: MessageRecord,
    reason: DeadLetterReason,
    detail: str,
    now: datetime,
) -> None:
    await uow.messages.update(
        dataclasses.replace(message, status=MessageStatus.DEAD, updated_at=now, error=detail)
    )
    await uow.dead_letters.add(dead_letter_of(message, reason, detail, now))


async def resume_session(
    tx: OutboxTransaction,
    endpoint: Endpoint,
    session_id: str,
    action: ResumeAction,
    now: datetime,
) -> SessionRecord:
    """Resume a faulted session by retrying or skipping the message it stopped at."""
    uow = tx.uow
    session = await _locked(uow, session_id)
    resumed = session.moved(SessionEvent.RESUME, now)
    stuck = await uow.messages.by_seq(session.id, session.fault_seq or 0)
    to_publish: list[MessageRecord] = []
    if stuck is not None and action is ResumeAction.RETRY:
        retry = dataclasses.replace(
            stuck, status=MessageStatus.PENDING, attempts=0, next_attempt_at=None, updated_at=now
        )
        await uow.messages.update(retry)
        to_publish.append(retry)
    elif stuck is not None:
        await _kill(uow, stuck, DeadLetterReason.SKIPPED, "skipped by an operator", now)
        resumed = dataclasses.replace(
            resumed,
            last_applied_seq=stuck.seq or resumed.last_applied_seq,
            dead_count=resumed.dead_count + 1,
        )
        following = await uow.messages.by_seq(session.id, resumed.last_applied_seq + 1)
        if following is not None and following.status in (
            MessageStatus.PENDING,
            MessageStatus.PARKED,
        ):
            to_publish.append(following)
    resumed = dataclasses.replace(resumed, fault_seq=None, fault_reason=None, progress_at=now)
    if resumed.close_requested:
        resumed = resumed.moved(SessionEvent.CLOSE, now).drained(now)
    updated = await uow.sessions.update(resumed)
    await tx.publish([outbox_entry(endpoint, m, now, tx.claim) for m in to_publish])
    return updated
