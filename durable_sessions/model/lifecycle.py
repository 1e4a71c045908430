"""The session lifecycle: states, events and the table of allowed transitions.

::

               CLOSE                 DRAINED
    open ──────────────▶ closing ──────────────▶ closed
     │ ▲   END (terminating op applied)            ▲
     │ └─────────── RESUME ── faulted              │
     ├── FAULT ─────────────▶ faulted              │
     └─────────────────────── END ─────────────────┘
    TERMINATE: open | closing | faulted ──▶ terminated
    EXPIRE:    open | closing | faulted ──▶ expired

``closed``, ``terminated`` and ``expired`` are final. Any pair not in the table raises
:class:`~durable_sessions.errors.IllegalTransition`.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from durable_sessions.errors import IllegalTransition


class SessionState(StrEnum):
    """Where a session is in its life."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    FAULTED = "faulted"
    TERMINATED = "terminated"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        """True when no event can leave this state."""
        return self in _FINAL

    @property
    def accepts_messages(self) -> bool:
        """True when new messages may be sent to the session."""
        return self is SessionState.OPEN

    @property
    def applies_messages(self) -> bool:
        """True when workers apply the session's messages."""
        return self in (SessionState.OPEN, SessionState.CLOSING)


class SessionEvent(StrEnum):
    """Something that happens to a session."""

    CLOSE = "close"
    DRAINED = "drain"
    END = "end"
    FAULT = "fault"
    RESUME = "resume"
    TERMINATE = "terminate"
    EXPIRE = "expire"


_S, _E = SessionState, SessionEvent
_FINAL = frozenset({_S.CLOSED, _S.TERMINATED, _S.EXPIRED})

TRANSITIONS: MappingProxyType[tuple[SessionState, SessionEvent], SessionState] = MappingProxyType(
    {
        (_S.OPEN, _E.CLOSE): _S.CLOSING,
        (_S.OPEN, _E.END): _S.CLOSED,
        (_S.OPEN, _E.FAULT): _S.FAULTED,
        (_S.OPEN, _E.TERMINATE): _S.TERMINATED,
        (_S.OPEN, _E.EXPIRE): _S.EXPIRED,
        (_S.CLOSING, _E.DRAINED): _S.CLOSED,
        (_S.CLOSING, _E.END): _S.CLOSED,
        (_S.CLOSING, _E.FAULT): _S.FAULTED,
        (_S.CLOSING, _E.TERMINATE): _S.TERMINATED,
        (_S.CLOSING, _E.EXPIRE): _S.EXPIRED,
        (_S.FAULTED, _E.RESUME): _S.OPEN,
        (_S.FAULTED, _E.TERMINATE): _S.TERMINATED,
        (_S.FAULTED, _E.EXPIRE): _S.EXPIRED,
    }
)
"""Every allowed (state, event) pair and the state it leads to."""


def transition(state: SessionState, event: SessionEvent) -> SessionState:
    """The state ``event`` leads to from ``state``; :class:`IllegalTransition` if none."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise IllegalTransition(state.value, event.value) from None
