"""Session control: close, terminate, resume, expire, and replay dead letters.

Each function runs inside the caller's unit of work, locks what it changes and moves the
session through :mod:`durable_sessions.lifecycle` (an illegal move raises
:class:`~durable_sessions.errors.IllegalTransition`). Messages a session still holds when it is
terminated or expires become dead letters. Functions that need a message published again
return the outbox entries to hand to a relay after the commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from durable_sessions.endpoints import Endpoint
from durable_sessions.errors import (
    DeadLetterNotFound,
    ReplayRefused,
    SessionNotFound,
    SessionNotOpen,
)
from durable_sessions.lifecycle import SessionEvent, SessionState, transition
from durable_sessions.records import (
    DeadLetterReason,
    MessageRecord,
    MessageStatus,
    OutboxRecord,
    SessionRecord,
    dead_letter_of,
)
from durable_sessions.sending import Claim, Sent, outbox_entry, send, send_datagram
from durable_sessions.store import SessionLock, UnitOfWork

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


def moved(session: SessionRecord, event: SessionEvent, now: datetime) -> SessionRecord:
    """``session`` after ``event`` (checked against the transition table)."""
    state = transition(session.state, event)
    return dataclasses.replace(
        session,
        state=state,
        updated_at=now,
        ended_at=now if state.is_final else session.ended_at,
        close_requested=session.close_requested or event is SessionEvent.CLOSE,
    )


def drained(session: SessionRecord, now: datetime) -> SessionRecord:
    """A closing session with nothing left to apply becomes closed; others stay as they are."""
    if session.state is SessionState.CLOSING and session.last_applied_seq >= session.last_sent_seq:
        return moved(session, SessionEvent.DRAINED, now)
    return session


async def close_session(uow: UnitOfWork, session_id: str, now: datetime) -> SessionRecord:
    """Close gracefully: refuse new messages, apply what is pending, then be closed.

    Closing a session that is already closing or closed changes nothing.
    """
    session = await _locked(uow, session_id)
    if session.state in (SessionState.CLOSING, SessionState.CLOSED):
        return session
    return await uow.sessions.update(drained(moved(session, SessionEvent.CLOSE, now), now))


async def terminate_session(
    uow: UnitOfWork, session_id: str, reason: str, now: datetime
) -> SessionRecord:
    """Abort: the session is terminated and every message it still holds is dead-lettered."""
    session = await _locked(uow, session_id)
    ended = moved(session, SessionEvent.TERMINATE, now)
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
    ended = moved(session, SessionEvent.EXPIRE, now)
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
    uow: UnitOfWork,
    endpoint: Endpoint,
    session_id: str,
    action: ResumeAction,
    now: datetime,
    claim: Claim | None = None,
) -> tuple[SessionRecord, list[OutboxRecord]]:
    """Resume a faulted session by retrying or skipping the message it stopped at."""
    session = await _locked(uow, session_id)
    resumed = moved(session, SessionEvent.RESUME, now)
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
        resumed = drained(moved(resumed, SessionEvent.CLOSE, now), now)
    updated = await uow.sessions.update(resumed)
    entries = [await uow.outbox.add(outbox_entry(endpoint, m, now, claim)) for m in to_publish]
    return updated, entries


async def replay_dead_letter(
    uow: UnitOfWork,
    endpoints: Mapping[str, Endpoint],
    dead_letter_id: str,
    now: datetime,
    claim: Claim | None = None,
) -> Sent:
    """Send a dead letter's call again: at the end of its (open) session, or as a datagram."""
    letter = await uow.dead_letters.get(dead_letter_id)
    if letter is None:
        raise DeadLetterNotFound(f"no dead letter with id {dead_letter_id!r}")
    if letter.replayed_at is not None:
        raise ReplayRefused(
            f"dead letter {letter.id!r} was already replayed as message "
            f"{letter.replay_message_id!r}"
        )
    endpoint = endpoints.get(letter.endpoint)
    if endpoint is None or not letter.operation:
        raise ReplayRefused(
            f"dead letter {letter.id!r} cannot be replayed: "
            + ("it was never a valid call" if endpoint else f"unknown endpoint {letter.endpoint!r}")
        )
    if letter.session_id is not None:
        session = await uow.sessions.get(letter.session_id, lock=SessionLock.SENDS)
        if session is None:
            raise SessionNotFound(letter.session_id)
        if session.state is not SessionState.OPEN:
            raise SessionNotOpen(session.id, session.state.value)
        sent = await send(
            uow, endpoint, session.id, letter.operation, letter.args, now, claim=claim
        )
    else:
        sent = await send_datagram(uow, endpoint, letter.operation, letter.args, now, claim=claim)
    await uow.dead_letters.update(
        dataclasses.replace(letter, replayed_at=now, replay_message_id=sent.message.message_id)
    )
    return sent
