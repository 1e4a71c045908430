"""The RM source engine, one behaviour at a time."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sessions.wsrm import faults
from durable_sessions.wsrm.actions import (
    Acknowledged,
    Action,
    Faulted,
    ScheduleWakeup,
    Send,
    Terminated,
)
from durable_sessions.wsrm.errors import SequenceExhausted, SequenceNotOpen, TransferWindowFull
from durable_sessions.wsrm.messages import (
    MAX_MESSAGE_NUMBER,
    AckRange,
    AckRequested,
    CloseSequence,
    CloseSequenceResponse,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    Payload,
    RMAction,
    RMVersion,
    Sequence,
    SequenceAcknowledgement,
    TerminateSequence,
    TerminateSequenceResponse,
    action_uri,
    rm_envelope,
)
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.source import ReliableSource, SourceSequenceState, SourceStatus
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import validate

SEQ = "urn:uuid:00000000-0000-0000-0000-000000000001"
DEST = "http://dest.example/svc"
ACKS = "http://src.example/acks"
V11 = RMVersion.WSRM_1_1
V2005 = RMVersion.WSRM_2005_02
PAYLOAD = Payload(b"<op></op>")


def sends(actions: list[Action]) -> list[Envelope]:
    return [a.envelope for a in actions if isinstance(a, Send)]


def wake_at(actions: list[Action]) -> float:
    (wake,) = [a for a in actions if isinstance(a, ScheduleWakeup)]
    return wake.at


def opened(source: ReliableSource, now: float = 0.0) -> SourceSequenceState:
    state, _ = source.create(to=DEST, acks_to=ACKS, message_id="urn:uuid:create", now=now)
    response = rm_envelope(
        CreateSequenceResponse(SEQ), source.version, relates_to="urn:uuid:create"
    )
    state, _ = source.receive(state, response, now)
    assert state.status is SourceStatus.OPEN
    return state


def ack(*ranges: tuple[int, int], remaining: int | None = None, final: bool = False) -> Envelope:
    return Envelope(
        action="urn:ack",
        acknowledgements=(
            SequenceAcknowledgement(
                SEQ, tuple(AckRange(*r) for r in ranges), final=final, buffer_remaining=remaining
            ),
        ),
    )


def send(
    source: ReliableSource, state: SourceSequenceState, now: float
) -> tuple[SourceSequenceState, list[Action]]:
    return source.send(state, action="urn:op", payload=PAYLOAD, now=now)


@pytest.mark.parametrize("version", list(RMVersion))
def test_create_sends_a_valid_create_sequence(version: RMVersion) -> None:
    source = ReliableSource(ReliableSessionSettings(version=version))
    state, actions = source.create(to=DEST, acks_to=ACKS, message_id="urn:uuid:c", now=5.0)
    (envelope,) = sends(actions)
    assert envelope == rm_envelope(
        CreateSequence(EndpointReference(ACKS)),
        version,
        to=DEST,
        message_id="urn:uuid:c",
        reply_to=EndpointReference(ACKS),
    )
    validate(codec.encode(envelope, version))
    assert state.status is SourceStatus.CREATING
    assert wake_at(actions) == 6.0
    assert source.available(state) == 0
    with pytest.raises(SequenceNotOpen, match="is creating"):
        send(source, state, 5.0)


def test_create_sequence_is_retried_with_backoff_then_faults() -> None:
    source = ReliableSource(ReliableSessionSettings(inactivity_timeout=10_000))
    state, actions = source.create(to=DEST, acks_to=ACKS, message_id="urn:uuid:c", now=0.0)
    times = []
    while state.status is SourceStatus.CREATING:
        now = wake_at(actions)
        state, actions = source.wakeup(state, now)
        times += [now for _ in sends(actions)]
    assert times == [1, 3, 7, 15, 31, 63, 127, 255]
    assert now == 511
    assert actions == [Faulted(faults.max_retry_count_exceeded(""))]  # no sequence to tell


def test_responses_to_other_requests_are_ignored() -> None:
    source = ReliableSource()
    state, _ = source.create(to=DEST, acks_to=ACKS, message_id="urn:uuid:c", now=0.0)
    other = rm_envelope(CreateSequenceResponse("urn:x"), V2005, relates_to="urn:uuid:other")
    assert source.receive(state, other, 1.0) == (state, [])


def test_create_sequence_refused_faults_the_source() -> None:
    source = ReliableSource()
    state, _ = source.create(to=DEST, acks_to=ACKS, message_id="urn:uuid:c", now=0.0)
    refusal = faults.fault_envelope(
        faults.connection_limit_reached(DEST), V2005, relates_to="urn:uuid:c"
    )
    state, actions = source.receive(state, refusal, 1.0)
    assert state.status is SourceStatus.FAULTED
    assert actions == [Faulted(faults.connection_limit_reached(DEST))]
    assert source.next_wakeup(state) is None
    assert source.wakeup(state, 2.0) == (state, [])


def test_messages_are_numbered_and_the_window_limits_sending() -> None:
    source = ReliableSource(ReliableSessionSettings(max_transfer_window_size=3))
    state = opened(source)
    numbers, requested = [], []
    for now in (1.0, 2.0, 3.0):
        state, actions = send(source, state, now)
        (envelope,) = sends(actions)
        assert envelope.sequence is not None
        numbers.append(envelope.sequence.message_number)
        requested.append(bool(envelope.ack_requested))
    assert numbers == [1, 2, 3]
    assert requested == [False, False, True]  # the message that fills the window asks for an ack
    assert source.available(state) == 0
    with pytest.raises(TransferWindowFull):
        send(source, state, 4.0)
    state, actions = source.receive(state, ack((2, 3)), 4.0)
    assert actions[0] == Acknowledged((2, 3))
    assert source.available(state) == 0  # message 1 still holds the window's first slot
    state, actions = source.receive(state, ack((1, 3)), 5.0)
    assert actions[0] == Acknowledged((1,))
    assert source.available(state) == 3
    assert state.unacknowledged == ()


def test_acknowledging_unsent_messages_is_an_invalid_acknowledgement() -> None:
    source = ReliableSource()
    state = opened(source)
    state, _ = send(source, state, 1.0)
    bad = ack((1, 2))
    state, actions = source.receive(state, bad, 2.0)
    assert state.status is SourceStatus.FAULTED
    fault = faults.invalid_acknowledgement(bad.acknowledgements[0])
    assert sends(actions) == [faults.fault_envelope(fault, V2005, to=DEST)]
    assert actions[-1] == Faulted(fault)
    validate(codec.encode(sends(actions)[0], V2005))


def test_final_acknowledgement_with_gaps_is_invalid() -> None:
    source = ReliableSource(ReliableSessionSettings(version=V11))
    state = opened(source)
    for now in (1.0, 2.0):
        state, _ = send(source, state, now)
    state, _actions = source.receive(state, ack((2, 2), final=True), 3.0)
    assert state.status is SourceStatus.FAULTED


def test_flow_control_follows_buffer_remaining() -> None:
    source = ReliableSource()
    state = opened(source)
    for now in (1.0, 2.0, 3.0):
        state, _ = send(source, state, now)
    state, _ = source.receive(state, ack((2, 3), remaining=1), 4.0)
    assert source.available(state) == 0  # 1 free slot, message 1 still in flight
    state, _ = source.receive(state, ack((2, 3), remaining=0), 4.5)
    assert source.available(state) == 0  # a stale copy never lowers the quota...
    state, _ = source.receive(state, ack((2, 3), remaining=5), 4.6)
    assert source.available(state) == 4  # ...but may raise it
    state, _ = source.receive(state, ack((1, 3), remaining=2), 5.0)
    assert source.available(state) == 2
    state, _ = send(source, state, 6.0)
    state, actions = send(source, state, 6.0)
    assert sends(actions)[0].ack_requested == (AckRequested(SEQ),)  # the quota is used up
    assert source.available(state) == 0
    ignoring = ReliableSource(ReliableSessionSettings(flow_control_enabled=False))
    state = opened(ignoring)
    state, _ = send(ignoring, state, 1.0)
    state, _ = ignoring.receive(state, ack((1, 1), remaining=0), 2.0)
    assert ignoring.available(state) == 8


@settings(max_examples=40, deadline=None)
@given(
    retries=st.integers(1, 10),
    interval=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
    start=st.floats(0, 1000, allow_nan=False),
)
def test_retransmissions_back_off_exponentially_then_fault(
    retries: int, interval: float, start: float
) -> None:
    source = ReliableSource(
        ReliableSessionSettings(
            max_retry_count=retries, initial_retry_interval=interval, inactivity_timeout=1e12
        )
    )
    state = opened(source, start)
    state, actions = send(source, state, start)
    retransmitted = []
    while state.status is SourceStatus.OPEN:
        now = wake_at(actions)
        state, actions = source.wakeup(state, now)
        retransmitted += [(now, e.sequence, e.ack_requested) for e in sends(actions) if e.sequence]
    expected = [start + interval * (2**k - 1) for k in range(1, retries + 1)]
    assert [t for t, _, _ in retransmitted] == pytest.approx(expected)
    assert {s for _, s, _ in retransmitted} == {Sequence(SEQ, 1)}
    assert all(r == (AckRequested(SEQ),) for _, _, r in retransmitted)
    assert now == pytest.approx(start + interval * (2 ** (retries + 1) - 1))
    fault = faults.max_retry_count_exceeded(SEQ)
    assert actions == [Send(faults.fault_envelope(fault, V2005, to=DEST)), Faulted(fault)]
    assert state.status is SourceStatus.FAULTED
    assert state.unacknowledged[0].attempts == retries + 1  # kept for dead-lettering


def test_wcf_default_retry_schedule() -> None:
    source = ReliableSource()
    state = opened(source)
    state, actions = send(source, state, 0.0)
    times = []
    while state.status is SourceStatus.OPEN:
        now = wake_at(actions)
        state, actions = source.wakeup(state, now)
        times += [now for e in sends(actions) if e.sequence]
    assert times == [1, 3, 7, 15, 31, 63, 127, 255]
    assert now == 511  # about 8.5 minutes, inside the 10 minute inactivity timeout


def test_acknowledged_message_is_not_retransmitted_and_early_wakeups_do_nothing() -> None:
    source = ReliableSource()
    state = opened(source)
    state, _ = send(source, state, 0.0)
    assert source.wakeup(state, 0.5)[0] == state
    state, _ = source.receive(state, ack((1, 1)), 0.7)
    state, actions = source.wakeup(state, 1.0)
    assert sends(actions) == []


def test_nacked_messages_are_resent_at_once() -> None:
    source = ReliableSource()
    state = opened(source)
    for now in (0.0, 0.1, 0.2):
        state, _ = send(source, state, now)
    nack = Envelope("urn:ack", acknowledgements=(SequenceAcknowledgement(SEQ, nacks=(2,)),))
    state, actions = source.receive(state, nack, 0.3)
    assert [e.sequence for e in sends(actions)] == [Sequence(SEQ, 2)]
    assert state.unacknowledged[1].attempts == 2


def test_idle_source_sends_keep_alives_and_stays_alive_while_answered() -> None:
    source = ReliableSource()
    state, actions = source.wakeup(opened(source), 0.0)
    assert wake_at(actions) == 300.0
    state, actions = source.wakeup(state, 300.0)
    (keep_alive,) = sends(actions)
    assert keep_alive == Envelope(
        action=action_uri(RMAction.ACK_REQUESTED, V2005),
        to=DEST,
        ack_requested=(AckRequested(SEQ),),
    )
    state, _ = source.receive(state, ack(), 300.5)
    state, actions = source.wakeup(state, 600.0)
    assert len(sends(actions)) == 1
    assert state.status is SourceStatus.OPEN
    state, actions = source.wakeup(state, 900.5)  # unanswered since 300.5
    fault = faults.inactivity_timeout_exceeded(SEQ, 600.0)
    assert actions[-1] == Faulted(fault)
    assert fault.reason == "The inactivity timeout of (00:10:00) has been exceeded."


def test_february_2005_close_sends_last_message_then_terminates() -> None:
    source = ReliableSource(ReliableSessionSettings(max_transfer_window_size=2))
    state = opened(source)
    for now in (1.0, 2.0):
        state, _ = send(source, state, now)
    state, actions = source.close(state, 3.0)
    assert state.status is SourceStatus.CLOSING
    assert sends(actions) == []
    assert source.close(state, 3.0) == (state, [])
    state, actions = source.receive(state, ack((1, 2)), 4.0)
    (last,) = sends(actions)
    assert last.action == action_uri(RMAction.LAST_MESSAGE, V2005)
    assert last.sequence == Sequence(SEQ, 3, last_message=True)
    assert last.body is None
    validate(codec.encode(last, V2005))
    state, actions = source.receive(state, ack((1, 3)), 5.0)
    assert not [a for a in actions if isinstance(a, Acknowledged)]  # 3 was no app message
    assert sends(actions)[0].body == TerminateSequence(SEQ)
    assert Terminated() in actions
    assert state.status is SourceStatus.TERMINATED


def test_ws_rm_1_1_close_and_terminate_handshake() -> None:
    source = ReliableSource(ReliableSessionSettings(version=V11))
    state = opened(source)
    state, _ = send(source, state, 1.0)
    state, actions = source.close(state, 2.0)
    assert sends(actions) == []  # waits until message 1 is acknowledged
    with pytest.raises(SequenceNotOpen):
        send(source, state, 2.0)
    state, actions = source.receive(state, ack((1, 1)), 3.0)
    (close,) = sends(actions)
    assert close.body == CloseSequence(SEQ, 1)
    assert close.message_id is not None
    state, actions = source.wakeup(state, 4.0)  # CloseSequence is retried like a message
    assert sends(actions)[0] == close
    response = rm_envelope(
        CloseSequenceResponse(SEQ),
        V11,
        relates_to=close.message_id,
        acknowledgements=(SequenceAcknowledgement(SEQ, (AckRange(1, 1),), final=True),),
    )
    state, actions = source.receive(state, response, 5.0)
    (terminate,) = sends(actions)
    assert terminate.body == TerminateSequence(SEQ, 1)
    assert state.status is SourceStatus.TERMINATING
    done = rm_envelope(TerminateSequenceResponse(SEQ), V11, relates_to=terminate.message_id)
    state, actions = source.receive(state, done, 6.0)
    assert actions == [Terminated()]
    assert state.status is SourceStatus.TERMINATED
    for envelope in (close, terminate):
        validate(codec.encode(envelope, V11))


def test_closing_an_empty_1_1_sequence_sends_close_without_last_number() -> None:
    source = ReliableSource(ReliableSessionSettings(version=V11))
    _state, actions = source.close(opened(source), 1.0)
    assert sends(actions)[0].body == CloseSequence(SEQ)


def test_abort_tells_the_destination() -> None:
    source = ReliableSource()
    state, actions = source.abort(opened(source), 1.0)
    fault = faults.user_abort(SEQ)
    assert actions == [Send(faults.fault_envelope(fault, V2005, to=DEST)), Faulted(fault)]
    assert state.fault == fault
    assert source.abort(state, 2.0) == (state, [])
    with pytest.raises(SequenceNotOpen, match="is faulted"):
        source.close(state, 2.0)


def test_a_fault_from_the_destination_ends_the_sequence() -> None:
    source = ReliableSource()
    state = opened(source)
    fault = faults.sequence_terminated(SEQ, "gone", sender=False)
    state, actions = source.receive(state, faults.fault_envelope(fault, V2005), 1.0)
    assert (state.status, actions) == (SourceStatus.FAULTED, [Faulted(fault)])


def test_exhausted_message_numbers() -> None:
    source = ReliableSource()
    state = opened(source)
    last = replace(state, next_number=MAX_MESSAGE_NUMBER)
    state, _ = send(source, last, 1.0)
    assert source.available(state) == 0
    with pytest.raises(SequenceExhausted):
        send(source, state, 1.0)


def test_offered_sequence_starts_open() -> None:
    source = ReliableSource()
    state = source.open_offered(identifier=SEQ, to=DEST, acks_to=ACKS, now=3.0)
    state, actions = send(source, state, 3.0)
    assert sends(actions)[0].sequence == Sequence(SEQ, 1)
