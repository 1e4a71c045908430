"""The session state machine: every pair of state and event is either in the table or illegal."""

from __future__ import annotations

import itertools

import pytest

from durable_sessions.errors import IllegalTransition
from durable_sessions.model.lifecycle import TRANSITIONS, SessionEvent, SessionState, transition

S, E = SessionState, SessionEvent


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [
        (S.OPEN, E.CLOSE, S.CLOSING),
        (S.CLOSING, E.DRAINED, S.CLOSED),
        (S.OPEN, E.END, S.CLOSED),
        (S.CLOSING, E.END, S.CLOSED),
        (S.OPEN, E.FAULT, S.FAULTED),
        (S.CLOSING, E.FAULT, S.FAULTED),
        (S.FAULTED, E.RESUME, S.OPEN),
        (S.OPEN, E.TERMINATE, S.TERMINATED),
        (S.CLOSING, E.TERMINATE, S.TERMINATED),
        (S.FAULTED, E.TERMINATE, S.TERMINATED),
        (S.OPEN, E.EXPIRE, S.EXPIRED),
        (S.CLOSING, E.EXPIRE, S.EXPIRED),
        (S.FAULTED, E.EXPIRE, S.EXPIRED),
    ],
)
def test_allowed_transitions(state: S, event: E, target: S) -> None:
    assert transition(state, event) is target


def test_the_table_holds_exactly_the_allowed_transitions() -> None:
    assert len(TRANSITIONS) == 13


@pytest.mark.parametrize(
    ("state", "event"),
    [pair for pair in itertools.product(S, E) if pair not in TRANSITIONS],
)
def test_everything_else_is_illegal(state: S, event: E) -> None:
    with pytest.raises(IllegalTransition) as raised:
        transition(state, event)
    assert raised.value.state == state.value
    assert str(raised.value) == f"cannot {event.value} a session that is {state.value}"


@pytest.mark.parametrize("state", [S.CLOSED, S.TERMINATED, S.EXPIRED])
def test_final_states_have_no_way_out(state: S) -> None:
    assert state.is_final
    assert not any(s is state for s, _ in TRANSITIONS)


def test_what_each_state_accepts() -> None:
    assert [s for s in S if s.accepts_messages] == [S.OPEN]
    assert [s for s in S if s.applies_messages] == [S.OPEN, S.CLOSING]
