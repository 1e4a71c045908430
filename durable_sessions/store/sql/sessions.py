"""The SQL repository of sessions (:class:`~durable_sessions.store.base.SessionRepository`).

A session is two rows: its state in ``ds_sessions`` and its send side in ``ds_session_sends``.
Locks are ``SELECT ... FOR NO KEY UPDATE`` on the row of the part asked for, which neither
blocks the other part's writers nor the foreign-key checks of messages inserted for the session;
the other part is read by a statement of its own once the lock is held, so it is the latest
committed (a joined read would see the other part as it was before the lock wait).

Each part stores the deadline it knows of: the state the session's ``expires_at`` as its writer
saw it, the send side the end of the time to live (a send leaves a message pending, and pending
messages wait that long). A send does not write the state, so the state's deadline may predate
messages still pending; the session then expires by its send side's.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from durable_sessions.errors import ConcurrencyConflict, StoreError
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import SESSION_SEND_FIELDS, SESSION_STATE_FIELDS, SessionRecord
from durable_sessions.store.base import (
    SessionLock,
    SessionOrder,
    SessionQuery,
    SessionRepository,
    check_limit,
)
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.work import IDS, Work, one_of

_STATE = schema.sessions
_SENDS = schema.session_sends
_STATE_WRITABLE = (
    *(c for c in SESSION_STATE_FIELDS if c not in ("id", "labels", "created_at", "version")),
    "expires_at",
)
_SENDS_WRITABLE = (*SESSION_SEND_FIELDS, "expires_at")
_JOINED = sa.select(_STATE, *(_SENDS.c[name] for name in SESSION_SEND_FIELDS)).join(
    _SENDS, _SENDS.c.session_id == _STATE.c.id
)
_INSERT_STATE = sa.insert(_STATE)
_INSERT_SENDS = sa.insert(_SENDS)
_INSERT_LABELS = sa.insert(schema.session_labels)


class _ByIds(NamedTuple):
    """Statements reading the sessions whose ids are in parameter ``IDS``."""

    joined: sa.Select[Any]
    state: sa.Select[Any]
    sends: sa.Select[Any]
    state_locked: sa.Select[Any]
    sends_locked: sa.Select[Any]


@functools.cache
def _by_ids(dialect: str) -> _ByIds:
    state = sa.select(_STATE).where(one_of(_STATE.c.id, dialect)).order_by(_STATE.c.id)
    sends = (
        sa.select(_SENDS).where(one_of(_SENDS.c.session_id, dialect)).order_by(_SENDS.c.session_id)
    )
    return _ByIds(
        joined=_JOINED.where(one_of(_STATE.c.id, dialect)),
        state=state,
        sends=sends,
        state_locked=state.with_for_update(key_share=True),
        sends_locked=sends.with_for_update(key_share=True),
    )


@functools.cache
def _lock_versions(dialect: str) -> sa.Select[Any]:
    """Lock the state rows of the sessions in parameter ``IDS``; their versions."""
    return (
        sa.select(_STATE.c.id, _STATE.c.version)
        .where(one_of(_STATE.c.id, dialect))
        .order_by(_STATE.c.id)
        .with_for_update(key_share=True)
    )


_STATE_VALUES = operator.attrgetter(*SESSION_STATE_FIELDS)
"""A session's state fields, which its state row (``expires_at`` too) follows from."""
_SENDS_VALUES = operator.attrgetter(
    *SESSION_SEND_FIELDS, "inactivity_timeout_s", "ttl_s", "created_at"
)
"""The fields its send side row follows from."""


def _state_row(session: SessionRecord) -> dict[str, Any]:
    row = {name: getattr(session, name) for name in SESSION_STATE_FIELDS}
    row["expires_at"] = session.expires_at
    return row


def _sends_row(session: SessionRecord) -> dict[str, Any]:
    row = {name: getattr(session, name) for name in SESSION_SEND_FIELDS}
    row["expires_at"] = session.ends_at
    return row


def _positions(columns: Sequence[str], names: Sequence[str]) -> operator.itemgetter[Any]:
    """Picks the values of ``names`` out of a row of ``columns``, by position."""
    return operator.itemgetter(*(list(columns).index(name) for name in names))


_STATE_OF = _positions(_STATE.c.keys(), SESSION_STATE_FIELDS)
_SENDS_OF = _positions(_SENDS.c.keys(), SESSION_SEND_FIELDS)
_JOINED_SENDS_OF = _positions([*_STATE.c.keys(), *SESSION_SEND_FIELDS], SESSION_SEND_FIELDS)


def _session(state: tuple[Any, ...], sends: tuple[Any, ...]) -> SessionRecord:
    """The session of the values of its state and send fields (in their fields' order)."""
    return SessionRecord(
        **dict(zip(SESSION_STATE_FIELDS, state, strict=True)),
        **dict(zip(SESSION_SEND_FIELDS, sends, strict=True)),
    )


def _joined_session(row: sa.Row[Any]) -> SessionRecord:
    return _session(_STATE_OF(row), _JOINED_SENDS_OF(row))


Changes = list[tuple[SessionRecord, dict[str, Any], dict[str, Any]]]
"""Sessions to write, each with the part's row as last read or written and as it is to be."""


def _changed(
    columns: Sequence[str], pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]
) -> list[str]:
    """The columns in which any (before, after) pair of rows differs."""
    return [c for c in columns if any(before[c] != after[c] for before, after in pairs)]


class SqlSessions(SessionRepository):
    """Sessions in ``ds_sessions`` and ``ds_session_sends``; see the module docstring."""

    def __init__(self, work: Work) -> None:
        self._w = work

    async def add_many(self, sessions: Sequence[SessionRecord]) -> None:
        if not sessions:
            self._w.check(write=True)
            return
        await self._w.execute_many(_INSERT_STATE, [_state_row(s) for s in sessions])
        sends = [{"session_id": s.id, **_sends_row(s)} for s in sessions]
        await self._w.execute_many(_INSERT_SENDS, sends)
        labels = [
            {"session_id": s.id, "key": k, "value": v}
            for s in sessions
            for k, v in s.labels.items()
        ]
        if labels:
            await self._w.execute_many(_INSERT_LABELS, labels)
        for session in sessions:
            self._w.seen(session, state_locked=True, sends_locked=True)

    async def get_many(
        self, session_ids: Collection[str], *, lock: SessionLock | None = None
    ) -> dict[str, SessionRecord]:
        if not session_ids:
            self._w.check()
            return {}
        ids = {IDS: sorted(set(session_ids))}
        by_ids = _by_ids(self._w.dialect)
        if lock is None:
            result = await self._w.execute(by_ids.joined, ids)
            found = {row.id: _joined_session(row) for row in result}
            for session in found.values():
                self._w.seen(session)
            return found
        lock_sends = lock is not SessionLock.STATE
        lock_state = lock is not SessionLock.SENDS
        # The locked part first, in id order (as everyone locks), then the other one.
        sends_query = by_ids.sends_locked if lock_sends else by_ids.sends
        state_query = by_ids.state_locked if lock_state else by_ids.state
        first, second = (sends_query, state_query) if lock_sends else (state_query, sends_query)
        rows = [await self._w.execute(first, ids), await self._w.execute(second, ids)]
        sends_rows, state_rows = rows if lock_sends else rows[::-1]
        sends = {row.session_id: _SENDS_OF(row) for row in sends_rows}
        found = {
            row.id: _session(_STATE_OF(row), sends[row.id]) for row in state_rows if row.id in sends
        }
        for session in found.values():
            self._w.seen(session, state_locked=lock_state, sends_locked=lock_sends)
        return found

    async def update(self, session: SessionRecord) -> SessionRecord:
        (updated,) = await self.update_many([session])
        return updated

    async def update_many(self, sessions: Sequence[SessionRecord]) -> list[SessionRecord]:
        w = self._w
        w.check(write=True)
        if not sessions:
            return []
        ids = [s.id for s in sessions]
        if len(set(ids)) != len(ids):
            raise w.fail(ConcurrencyConflict("a session appears twice in one batch update"))
        unseen = [i for i in ids if i not in w.sessions]
        if unseen:
            await self.get_many(unseen)
        missing = [i for i in ids if i not in w.sessions]
        if missing:
            raise w.fail(ConcurrencyConflict(f"no session {missing[0]!r} to update"))
        # What changed, part by part, since this transaction last read or wrote the session.
        states = [
            (s, _state_row(w.sessions[s.id]), _state_row(s))
            for s in sessions
            if _STATE_VALUES(s) != _STATE_VALUES(w.sessions[s.id])
        ]
        sends = [
            (s, _sends_row(w.sessions[s.id]), _sends_row(s))
            for s in sessions
            if _SENDS_VALUES(s) != _SENDS_VALUES(w.sessions[s.id])
        ]
        if any(s.id not in w.sends_locked for s, _, _ in sends):
            raise w.fail(StoreError("a session's send side can change only under its send lock"))
        await self._write_state(states)
        if sends:
            changed = _changed(_SENDS_WRITABLE, [(before, after) for _, before, after in sends])
            rows = [{"session_id": s.id, **{c: after[c] for c in changed}} for s, _, after in sends]
            await w.update_rows(_SENDS, "session_id", rows)
        written = {s.id for s, _, _ in states}
        updated = [
            dataclasses.replace(s, version=s.version + 1) if s.id in written else s
            for s in sessions
        ]
        for session in updated:
            w.seen(session)
        return updated

    async def _write_state(self, changes: Changes) -> None:
        """Write changed states whose version is current, their rows locked first."""
        if not changes:
            return
        w = self._w
        unlocked = sorted(s.id for s, _, _ in changes if s.id not in w.state_locked)
        if unlocked:
            result = await w.execute(_lock_versions(w.dialect), {IDS: unlocked}, write=True)
            stored: dict[str, int] = {row.id: row.version for row in result}
            w.state_locked.update(stored)
        else:
            stored = {}
        for s, _, _ in changes:
            current = stored.get(s.id, w.sessions[s.id].version)
            if current != s.version:
                raise w.fail(
                    ConcurrencyConflict(
                        f"session {s.id!r} changed since it was read "
                        f"(version {s.version}, stored {current})"
                    )
                )
        changed = _changed(_STATE_WRITABLE, [(before, after) for _, before, after in changes])
        rows = [
            {"id": s.id, "version": s.version + 1, **{c: after[c] for c in changed}}
            for s, _, after in changes
        ]
        await w.update_rows(_STATE, "id", rows)

    async def find(self, query: SessionQuery) -> list[SessionRecord]:
        newest = query.order is SessionOrder.NEWEST_FIRST
        stmt = _JOINED.order_by(_STATE.c.id.desc() if newest else _STATE.c.id)
        stmt = stmt.limit(check_limit(query.limit))
        if query.state is not None:
            stmt = stmt.where(_STATE.c.state == query.state)
        if query.contract is not None:
            stmt = stmt.where(_STATE.c.contract == query.contract)
        if query.endpoint is not None:
            stmt = stmt.where(_STATE.c.endpoint == query.endpoint)
        if query.created_after is not None:
            stmt = stmt.where(_STATE.c.created_at >= query.created_after)
        if query.created_before is not None:
            stmt = stmt.where(_STATE.c.created_at < query.created_before)
        if query.after_id is not None:
            stmt = stmt.where(
                _STATE.c.id < query.after_id if newest else _STATE.c.id > query.after_id
            )
        labels = schema.session_labels
        for key, value in query.labels.items():
            stmt = stmt.where(
                sa.exists().where(
                    labels.c.session_id == _STATE.c.id,
                    labels.c.key == key,
                    labels.c.value == value,
                )
            )
        return await self._joined(stmt)

    async def expiring(self, now: datetime, limit: int) -> list[SessionRecord]:
        # The state's deadline (indexed) holds unless messages sent since it was written wait:
        # then the send side's does, the end of the time to live (never earlier).
        pending = _SENDS.c.last_sent_seq > _STATE.c.last_applied_seq
        deadline = sa.case((pending, _SENDS.c.expires_at), else_=_STATE.c.expires_at)
        return await self._joined(
            _JOINED.where(_STATE.c.expires_at <= now, deadline <= now)
            .order_by(deadline, _STATE.c.id)
            .limit(check_limit(limit))
        )

    async def stall_checks_due(self, now: datetime, limit: int) -> list[SessionRecord]:
        return await self._joined(
            _JOINED.where(_SENDS.c.stall_check_at <= now)
            .order_by(_SENDS.c.stall_check_at, _STATE.c.id)
            .limit(check_limit(limit))
        )

    async def count_by_state(self) -> dict[SessionState, int]:
        result = await self._w.execute(
            sa.select(_STATE.c.state, sa.func.count()).group_by(_STATE.c.state)
        )
        counts = dict.fromkeys(SessionState, 0)
        counts.update((state, count) for state, count in result)
        return counts

    async def _joined(self, statement: sa.Select[Any]) -> list[SessionRecord]:
        result = await self._w.execute(statement)
        return [_joined_session(row) for row in result]
