"""Replay dead letters so that order survives: into a new session, or as datagrams.

A session's dead letter had a place in that session's order; sending it to the same session again
would apply it after messages sent later, out of its place. So dead letters are replayed:

- **into a new session** on the same endpoint, which carries the dead letters of one session in
  their original ``seq`` order (the way a WCF service reads the messages moved to a poison queue,
  as a conversation of their own). This reaches the dead letters of terminated and expired
  sessions too; the first one replayed must be an initiating operation, as for any session;
- **as datagrams**, each on its own, where the endpoint takes datagrams; datagrams have no order.

Putting a failed message back *at its place* is not a replay: while its session is faulted at
it, that is :func:`~durable_sessions.engine.control.resume_session` with ``retry``.

A replayed message's id is ``replay-<dead letter id>``, so two replays of one dead letter racing
each other write one message between them: the other transaction fails on that id and, run again,
finds the dead letter replayed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from durable_sessions.engine.outbox import OutboxTransaction
from durable_sessions.engine.sending import SendRequest, Sent, open_session, send_many
from durable_sessions.errors import DeadLetterNotFound, ReplayRefused
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import DeadLetterRecord, SessionRecord
from durable_sessions.store.base import MAX_PAGE, DeadLetterQuery, UnitOfWork

MAX_REPLAY = MAX_PAGE
"""The most dead letters one replay carries."""


class ReplayInto(StrEnum):
    """Where replayed dead letters go."""

    NEW_SESSION = "new_session"
    """A new session on the same endpoint, the dead letters in their original order."""
    DATAGRAMS = "datagrams"
    """One datagram each, where the endpoint takes datagrams."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay sent, and the session it opened (None for datagrams)."""

    into: ReplayInto
    session: SessionRecord | None
    sent: list[Sent]


@dataclass(frozen=True, slots=True)
class NewSessionTimeouts:
    """The timeouts of a session opened for a replay."""

    inactivity_timeout_s: float
    ttl_s: float | None


async def replay_dead_letters(
    tx: OutboxTransaction,
    endpoints: Mapping[str, Endpoint],
    dead_letter_ids: Sequence[str],
    now: datetime,
    *,
    timeouts: NewSessionTimeouts,
    into: ReplayInto | None = None,
) -> Replayed:
    """Replay the dead letters named, all or none; see the module docstring for the rules.

    ``into`` defaults to a new session for a session's dead letters and to datagrams for
    datagrams' ones.
    """
    letters = await _replayable(tx.uow, dead_letter_ids)
    endpoint = _one_endpoint(letters, endpoints)
    into = into or (
        ReplayInto.DATAGRAMS if letters[0].session_id is None else ReplayInto.NEW_SESSION
    )
    session = None
    if into is ReplayInto.NEW_SESSION:
        letters = _in_session_order(letters)
        session = await open_session(
            tx.uow,
            endpoint,
            now,
            inactivity_timeout_s=timeouts.inactivity_timeout_s,
            ttl_s=timeouts.ttl_s,
            labels={"replay-of": letters[0].session_id or ""},
        )
    requests = [
        SendRequest(
            endpoint,
            session.id if session is not None else None,
            letter.operation,
            letter.args,
            message_id=f"replay-{letter.id}",
        )
        for letter in letters
    ]
    sent: list[Sent] = []
    for letter, result in zip(letters, await send_many(tx, requests, now), strict=True):
        if not isinstance(result, Sent):
            raise ReplayRefused(
                f"dead letter {letter.id!r} cannot be replayed {_as(into)}: {result}"
            )
        sent.append(result)
    for letter, result in zip(letters, sent, strict=True):
        await tx.uow.dead_letters.update(
            dataclasses.replace(
                letter, replayed_at=now, replay_message_id=result.message.message_id
            )
        )
    return Replayed(into, session, sent)


async def session_dead_letter_ids(uow: UnitOfWork, session_id: str) -> list[str]:
    """The ids of the dead letters of ``session_id`` not replayed yet."""
    found: list[DeadLetterRecord] = []
    after: str | None = None
    while page := await uow.dead_letters.find(
        DeadLetterQuery(session_id=session_id, after_id=after, limit=MAX_PAGE)
    ):
        found += [letter for letter in page if letter.replayed_at is None]
        if len(found) > MAX_REPLAY:
            raise ReplayRefused(
                f"session {session_id!r} has more than {MAX_REPLAY} dead letters; replay them "
                "by id, in parts of at most that many"
            )
        after = page[-1].id
    if not found:
        raise ReplayRefused(f"session {session_id!r} has no dead letters left to replay")
    return [letter.id for letter in found]


async def _replayable(uow: UnitOfWork, ids: Sequence[str]) -> list[DeadLetterRecord]:
    unique = list(dict.fromkeys(ids))
    if not unique:
        raise ReplayRefused("name at least one dead letter to replay")
    if len(unique) > MAX_REPLAY:
        raise ReplayRefused(f"one replay carries at most {MAX_REPLAY} dead letters")
    letters: list[DeadLetterRecord] = []
    for letter_id in unique:
        letter = await uow.dead_letters.get(letter_id)
        if letter is None:
            raise DeadLetterNotFound(f"no dead letter with id {letter_id!r}")
        if letter.replayed_at is not None:
            raise ReplayRefused(
                f"dead letter {letter.id!r} was already replayed as message "
                f"{letter.replay_message_id!r}"
            )
        if not letter.operation:
            raise ReplayRefused(
                f"dead letter {letter.id!r} cannot be replayed: it was never a valid call"
            )
        letters.append(letter)
    return letters


def _one_endpoint(letters: list[DeadLetterRecord], endpoints: Mapping[str, Endpoint]) -> Endpoint:
    names = {letter.endpoint for letter in letters}
    if len(names) > 1:
        raise ReplayRefused(
            f"dead letters of endpoints {', '.join(map(repr, sorted(names)))} cannot be replayed "
            "together: replay each endpoint's on their own"
        )
    (name,) = names
    endpoint = endpoints.get(name)
    if endpoint is None:
        raise ReplayRefused(
            f"dead letter {letters[0].id!r} cannot be replayed: unknown endpoint {name!r}"
        )
    return endpoint


def _in_session_order(letters: list[DeadLetterRecord]) -> list[DeadLetterRecord]:
    """The dead letters of one session in ``seq`` order; any other mix has no order to keep."""
    sessions = {letter.session_id for letter in letters}
    if None in sessions:
        datagram = next(letter for letter in letters if letter.session_id is None)
        raise ReplayRefused(
            f"dead letter {datagram.id!r} was a datagram, which has no place in a session: "
            f"replay it {_as(ReplayInto.DATAGRAMS)}"
        )
    if len(sessions) > 1:
        raise ReplayRefused(
            "dead letters of several sessions cannot share one new session: their order "
            "relative to each other is not defined; replay each session's on their own"
        )
    return sorted(letters, key=lambda letter: letter.seq or 0)


def _as(into: ReplayInto) -> str:
    return "into a new session" if into is ReplayInto.NEW_SESSION else "as datagrams"
