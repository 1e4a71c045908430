"""Engine state to stored sequences and back: one :class:`SequenceRecord` per WS-RM sequence.

The engine counts time in float seconds; stored sequences use the Unix epoch, so a state saved
by one process continues in another after a restart.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from durable_sessions.model.records import SequenceRecord, SequenceRole
from durable_sessions.wsrm import snapshot
from durable_sessions.wsrm.destination import (
    DestinationSequenceState,
    DestinationStatus,
    ReliableDestination,
)
from durable_sessions.wsrm.source import ReliableSource, SourceSequenceState, SourceStatus

Engine = ReliableSource | ReliableDestination
State = SourceSequenceState | DestinationSequenceState


def seconds(moment: datetime) -> float:
    """``moment`` on the engine's clock (Unix epoch seconds)."""
    return moment.timestamp()


def moment(engine_seconds: float | None) -> datetime | None:
    """An engine time as a UTC datetime (None stays None)."""
    return None if engine_seconds is None else datetime.fromtimestamp(engine_seconds, UTC)


def derived_id(*parts: object) -> str:
    """A stable ``urn:uuid:`` made from ``parts`` (the same parts always give the same id)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "#".join(str(p) for p in parts)).urn


def _ended(state: State) -> bool:
    if isinstance(state, SourceSequenceState):
        return state.status in (SourceStatus.TERMINATED, SourceStatus.FAULTED)
    return state.status in (DestinationStatus.TERMINATED, DestinationStatus.FAULTED)


def new_record(
    engine: Engine,
    state: State,
    *,
    identifier: str,
    endpoint: str,
    now: datetime,
    session_id: str | None = None,
    create_message_id: str | None = None,
) -> SequenceRecord:
    """The record of a sequence the engine has just started (or accepted)."""
    role = SequenceRole.SOURCE if isinstance(engine, ReliableSource) else SequenceRole.DESTINATION
    record = SequenceRecord(
        identifier=identifier,
        role=role,
        rm_version=engine.version,
        endpoint=endpoint,
        state={},
        created_at=now,
        session_id=session_id,
        create_message_id=create_message_id,
    )
    return saved(record, engine, state, now)


def saved(record: SequenceRecord, engine: Engine, state: State, now: datetime) -> SequenceRecord:
    """``record`` holding ``state``, with the columns derived from it brought up to date."""
    if isinstance(engine, ReliableSource) and isinstance(state, SourceSequenceState):
        wake = engine.next_wakeup(state)
        pending = False
    elif isinstance(engine, ReliableDestination) and isinstance(state, DestinationSequenceState):
        wake = engine.next_wakeup(state)
        pending = state.pending
    else:
        raise TypeError("the engine and the state must be of the same role")
    return dataclasses.replace(
        record,
        state=snapshot.dump(state),
        pending=pending,
        ended=_ended(state),
        wake_at=moment(wake),
        updated_at=now,
    )


def ended(record: SequenceRecord, now: datetime) -> SequenceRecord:
    """``record`` marked over without a protocol step (its peer can no longer be reached)."""
    return dataclasses.replace(record, ended=True, pending=False, wake_at=None, updated_at=now)
