"""Destination wake-ups: a silent sequence ends, with its session, on every store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import SequenceRecord, utcnow
from durable_sessions.reliable.host import SEQUENCE_LABEL
from durable_sessions.reliable.wakeups import DestinationWakeups
from durable_sessions.store.base import SessionQuery, Store
from durable_sessions.wsrm.messages import RMFaultCode, RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings
from tests.reliable import documents as doc
from tests.reliable.conftest import calculator_app
from tests.reliable.test_soap_endpoint import create, fault_of, post, ranges

TIMEOUT_S = 0.3


async def sequence(store: Store, identifier: str) -> SequenceRecord:
    async with store.snapshot() as uow:
        record = await uow.sequences.get(identifier)
    assert record is not None
    return record


async def wait_ended(store: Store, identifier: str) -> SequenceRecord:
    for _ in range(250):
        record = await sequence(store, identifier)
        if record.ended:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"sequence {identifier} did not end")


async def session_end(store: Store, identifier: str) -> tuple[SessionState, str | None, object]:
    async with store.snapshot() as uow:
        (session,) = await uow.sessions.find(SessionQuery(labels={SEQUENCE_LABEL: identifier}))
    return session.state, session.end_reason, session.instance_state


async def test_a_silent_sequence_faults_and_terminates_its_session(
    store: Store, tmp_path: Path
) -> None:
    version = RMVersion.WSRM_1_1
    async with calculator_app(
        store, MemoryNode(), tmp_path, inactivity_timeout_s=TIMEOUT_S
    ) as http:
        identifier = await create(http, version, "urn:uuid:offer-silent")
        await post(http, doc.call(version, identifier, 1, "clear"))
        assert ranges(
            await post(http, doc.call(version, identifier, 3, "multiply_by", "<n>3</n>"))
        ) == [(1, 1), (3, 3)]
        await wait_ended(store, identifier)
        assert (await sequence(store, "urn:uuid:offer-silent")).ended
        state, reason, _ = await session_end(store, identifier)
        assert state is SessionState.TERMINATED
        assert reason is not None
        assert "The inactivity timeout of (00:00:00.3000000) has been exceeded." in reason
        late = await post(http, doc.call(version, identifier, 2, "add_to", "<n>5</n>"), 500)
        fault = fault_of(late)
        assert fault.rm_code is RMFaultCode.SEQUENCE_TERMINATED
        assert "inactivity timeout" in fault.reason


async def test_a_complete_sequence_whose_source_falls_silent_closes_its_session(
    store: Store, tmp_path: Path
) -> None:
    version = RMVersion.WSRM_1_1
    # Long enough for the pending add_to to be applied before the session's own backstop.
    async with calculator_app(
        store, MemoryNode(), tmp_path, inactivity_timeout_s=3 * TIMEOUT_S
    ) as http:
        identifier = await create(http, version, "urn:uuid:offer-complete")
        await post(http, doc.call(version, identifier, 1, "clear"))
        await post(http, doc.call(version, identifier, 2, "add_to", "<n>5</n>"))
        await post(http, doc.identified(version, "CloseSequence", identifier))
        await wait_ended(store, identifier)  # no TerminateSequence ever comes
        for _ in range(250):
            state, reason, instance = await session_end(store, identifier)
            if state is SessionState.CLOSED:
                break
            await asyncio.sleep(0.02)
    assert (state, reason, instance) == (SessionState.CLOSED, None, {"result": 5.0})


async def test_concurrent_sweepers_wake_a_due_sequence_once(store: Store, tmp_path: Path) -> None:
    version = RMVersion.WSRM_2005_02
    async with calculator_app(store, MemoryNode(), tmp_path) as http:
        identifier = await create(http, version, "urn:uuid:offer-race")
        await post(http, doc.call(version, identifier, 1, "clear"))
        settings = ReliableSessionSettings(inactivity_timeout=600.0)
        later = utcnow() + timedelta(seconds=601)
        sweepers = [DestinationWakeups(store, {"calculator": settings}) for _ in range(3)]
        woken = await asyncio.gather(*(s.sweep(later) for s in sweepers))
        assert sorted(woken) == [0, 0, 1]
        assert await sweepers[0].sweep(later) == 0
        assert (await sequence(store, identifier)).ended
        state, reason, _ = await session_end(store, identifier)
        assert state is SessionState.TERMINATED
        assert reason is not None
        assert "00:10:00" in reason


async def test_sequences_of_endpoints_not_served_are_left_alone(
    store: Store, tmp_path: Path
) -> None:
    async with calculator_app(store, MemoryNode(), tmp_path) as http:
        identifier = await create(http, RMVersion.WSRM_1_1, "urn:uuid:offer-other")
        later = utcnow() + timedelta(seconds=601)
        other = {"another-endpoint": ReliableSessionSettings()}
        assert await DestinationWakeups(store, other).sweep(later) == 0
        assert not (await sequence(store, identifier)).ended
