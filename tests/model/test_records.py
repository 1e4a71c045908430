"""Record invariants: ids, deadlines, and a session's moves through its lifecycle."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from durable_sessions.errors import IllegalTransition
from durable_sessions.model.lifecycle import SessionEvent, SessionState
from durable_sessions.model.records import SessionRecord, new_id


def test_ids_are_uuid7_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 50
    early = new_id()
    time.sleep(0.002)
    assert early < new_id()


def test_ids_made_in_one_millisecond_still_sort_in_the_order_made() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


def test_session_deadline_is_inactivity_or_ttl_whichever_first() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    idle = SessionRecord(id="s", contract="C", endpoint="e", created_at=t0)
    assert idle.expires_at == t0 + timedelta(seconds=600)
    active = SessionRecord(
        id="s", contract="C", endpoint="e", created_at=t0, last_activity_at=t0 + timedelta(hours=1)
    )
    assert active.expires_at == t0 + timedelta(hours=1, seconds=600)
    capped = SessionRecord(
        id="s",
        contract="C",
        endpoint="e",
        created_at=t0,
        ttl_s=3600,
        last_activity_at=t0 + timedelta(minutes=59),
    )
    assert capped.expires_at == t0 + timedelta(hours=1)
    closed = SessionRecord(
        id="s", contract="C", endpoint="e", created_at=t0, state=SessionState.CLOSED
    )
    assert closed.expires_at is None


def test_while_messages_are_pending_only_the_time_to_live_counts() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sent = {"last_sent_seq": 2, "last_sent_at": t0, "last_activity_at": t0}
    waiting = SessionRecord(
        id="s", contract="C", endpoint="e", created_at=t0, ttl_s=3600, last_applied_seq=1, **sent
    )
    assert waiting.expires_at == t0 + timedelta(hours=1)
    assert waiting.pending
    forever = dataclasses.replace(waiting, ttl_s=None)
    assert forever.expires_at is None
    applied = dataclasses.replace(
        waiting, last_applied_seq=2, last_activity_at=t0 + timedelta(minutes=5)
    )
    assert not applied.pending
    assert applied.expires_at == t0 + timedelta(minutes=15)


def test_a_move_follows_the_transition_table_and_stamps_its_time() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    later = t0 + timedelta(minutes=1)
    session = SessionRecord(id="s", contract="C", endpoint="e", created_at=t0)
    closing = session.moved(SessionEvent.CLOSE, later)
    assert (closing.state, closing.close_requested, closing.updated_at) == (
        SessionState.CLOSING,
        True,
        later,
    )
    assert closing.ended_at is None
    ended = closing.moved(SessionEvent.TERMINATE, later)
    assert (ended.state, ended.ended_at) == (SessionState.TERMINATED, later)
    with pytest.raises(IllegalTransition, match="cannot resume a session that is terminated"):
        ended.moved(SessionEvent.RESUME, later)


def test_a_closing_session_is_drained_once_everything_sent_is_applied() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    closing = SessionRecord(
        id="s",
        contract="C",
        endpoint="e",
        created_at=t0,
        state=SessionState.CLOSING,
        last_sent_seq=3,
        last_applied_seq=2,
    )
    assert closing.drained(t0) is closing
    done = dataclasses.replace(closing, last_applied_seq=3).drained(t0)
    assert (done.state, done.ended_at) == (SessionState.CLOSED, t0)
    open_ = dataclasses.replace(closing, state=SessionState.OPEN, last_applied_seq=3)
    assert open_.drained(t0) is open_
