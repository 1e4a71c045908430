"""Effects the protocol engine asks for, returned as data for the caller to carry out.

The engine (:mod:`~durable_sessions.wsrm.source`, :mod:`~durable_sessions.wsrm.destination`) never
does I/O: each step returns the new sequence state and a list of these actions. Carry them out
after the new state is stored (sending before storing could announce what a crash then forgets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from durable_sessions.wsrm.messages import Envelope, Fault, Payload


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``envelope`` to ``envelope.to`` (anonymous: on the request's back channel)."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand message ``number`` to the application: exactly once, in order when ordered."""

    number: int
    action: str
    payload: Payload | None
    message_id: str | None


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The destination confirmed these application messages (numbers ascending)."""

    numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Completed:
    """The application has now received every message of the sequence up to its last one."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The sequence ended normally; nothing more will happen on it."""


@dataclass(frozen=True, slots=True)
class Faulted:
    """The sequence failed and is over; ``fault`` says why (the peer was told when possible)."""

    fault: Fault


@dataclass(frozen=True, slots=True)
class ScheduleWakeup:
    """Call the engine's ``wakeup`` at time ``at`` (or later); it replaces earlier requests."""

    at: float


Action: TypeAlias = (
    Send | Deliver | Acknowledged | Completed | Terminated | Faulted | ScheduleWakeup
)
