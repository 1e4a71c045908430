"""Sequence state to JSON-ready data and back, for storing it (e.g. in a SQL JSON column).

A restored state continues exactly as the original would have: the engine keeps nothing else.
After restoring, schedule the engine's ``wakeup`` at its ``next_wakeup(state)``.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import TypeAdapter, ValidationError

from durable_sessions.errors import DurableSessionsError
from durable_sessions.wsrm.destination import DestinationSequenceState
from durable_sessions.wsrm.errors import InvalidSnapshot
from durable_sessions.wsrm.source import SourceSequenceState

_SOURCE = TypeAdapter(SourceSequenceState)
_DESTINATION = TypeAdapter(DestinationSequenceState)


def dump(state: SourceSequenceState | DestinationSequenceState) -> dict[str, Any]:
    """``state`` as JSON-compatible data (payloads as UTF-8 text)."""
    if isinstance(state, SourceSequenceState):
        return cast(dict[str, Any], _SOURCE.dump_python(state, mode="json"))
    return cast(dict[str, Any], _DESTINATION.dump_python(state, mode="json"))


def load_source(data: object) -> SourceSequenceState:
    """Restore a source state from :func:`dump` output."""
    try:
        return _SOURCE.validate_python(data)
    except (ValidationError, DurableSessionsError) as error:
        raise InvalidSnapshot(f"not a source sequence snapshot: {error}") from error


def load_destination(data: object) -> DestinationSequenceState:
    """Restore a destination state from :func:`dump` output."""
    try:
        return _DESTINATION.validate_python(data)
    except (ValidationError, DurableSessionsError) as error:
        raise InvalidSnapshot(f"not a destination sequence snapshot: {error}") from error
