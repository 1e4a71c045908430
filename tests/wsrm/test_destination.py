"""The RM destination engine, one behaviour at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_sessions.wsrm import faults
from durable_sessions.wsrm.actions import (
    Action,
    Completed,
    Deliver,
    Faulted,
    ScheduleWakeup,
    Send,
    Terminated,
)
from durable_sessions.wsrm.destination import (
    DestinationSequenceState,
    DestinationStatus,
    ReliableDestination,
)
from durable_sessions.wsrm.messages import (
    Accept,
    AckRange,
    AckRequested,
    CloseSequence,
    CloseSequenceResponse,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    IncompleteSequenceBehavior,
    Offer,
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
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import validate

SEQ = "urn:uuid:00000000-0000-0000-0000-00000000000d"
ADDRESS = "http://dest.example/svc"
ACKS = "http://src.example/acks"
V11 = RMVersion.WSRM_1_1
V2005 = RMVersion.WSRM_2005_02


def sends(actions: list[Action]) -> list[Envelope]:
    return [a.envelope for a in actions if isinstance(a, Send)]


def delivered(actions: list[Action]) -> list[int]:
    return [a.number for a in actions if isinstance(a, Deliver)]


def request(version: RMVersion = V2005, offer: Offer | None = None) -> Envelope:
    return rm_envelope(
        CreateSequence(EndpointReference(ACKS), offer=offer),
        version,
        message_id="urn:uuid:create",
        reply_to=EndpointReference(ACKS),
    )


def created(destination: ReliableDestination, now: float = 0.0) -> DestinationSequenceState:
    state, _ = destination.create(
        request(destination.version), identifier=SEQ, pending=0, address=ADDRESS, now=now
    )
    assert state is not None
    return state


def message(number: int, *, last: bool = False, ack_requested: bool = False) -> Envelope:
    return Envelope(
        action="urn:op",
        message_id=f"urn:m:{number}",
        sequence=Sequence(SEQ, number, last_message=last),
        ack_requested=(AckRequested(SEQ),) if ack_requested else (),
        body=Payload(f"<m>{number}</m>".encode()),
    )


def receive_all(
    destination: ReliableDestination,
    state: DestinationSequenceState,
    numbers: list[int],
    now: float,
) -> tuple[DestinationSequenceState, list[Action]]:
    everything: list[Action] = []
    for number in numbers:
        state, actions = destination.receive(state, message(number), now)
        everything += actions
    return state, everything


@pytest.mark.parametrize("version", list(RMVersion))
def test_create_answers_with_a_valid_response(version: RMVersion) -> None:
    destination = ReliableDestination(ReliableSessionSettings(version=version))
    state, actions = destination.create(
        request(version), identifier=SEQ, pending=3, address=ADDRESS, now=1.0
    )
    assert state is not None
    assert state.pending
    assert state.acks_to == ACKS
    behavior = IncompleteSequenceBehavior.DISCARD_FOLLOWING_FIRST_GAP if version is V11 else None
    (response,) = sends(actions)
    assert response == rm_envelope(
        CreateSequenceResponse(SEQ, incomplete_sequence_behavior=behavior),
        version,
        to=ACKS,
        relates_to="urn:uuid:create",
    )
    validate(codec.encode(response, version))
    assert destination.create_response(state, request(version), ADDRESS) == response
    assert actions[-1] == ScheduleWakeup(601.0)


def test_offered_sequence_is_accepted() -> None:
    destination = ReliableDestination(ReliableSessionSettings(version=V11))
    offer = Offer("urn:uuid:reverse", EndpointReference(ACKS))
    state, actions = destination.create(
        request(V11, offer), identifier=SEQ, pending=0, address=ADDRESS, now=0.0
    )
    assert state is not None
    assert state.offer == offer
    body = sends(actions)[0].body
    assert isinstance(body, CreateSequenceResponse)
    assert body.accept == Accept(EndpointReference(ADDRESS))


def test_max_pending_channels_refuses_with_connection_limit_reached(samples: Path) -> None:
    destination = ReliableDestination(ReliableSessionSettings(version=V11))
    state, actions = destination.create(
        request(V11), identifier=SEQ, pending=4, address="http://BusinessABC.com/serviceA", now=0.0
    )
    assert state is None
    (refusal,) = sends(actions)
    assert refusal.relates_to == "urn:uuid:create"
    assert refusal.to == ACKS
    document = codec.encode(refusal, V11)
    validate(document)
    wcf = samples / "wcf-docs/wcf-rm11__Fault_CreateSequenceRefused_ConnectionLimitReached.xml"
    text = wcf.read_text().replace(
        "<s:Envelope>",
        f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        f'xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsrm="{V11.value}" '
        'xmlns:netrm="http://schemas.microsoft.com/ws/2006/05/rm">',
    )
    documented = codec.decode(text.encode())
    assert codec.decode(document).body == documented.body  # same fault as WCF's documentation
    assert refusal.action == documented.action


def test_create_needs_a_create_sequence() -> None:
    with pytest.raises(TypeError):
        ReliableDestination().create(
            Envelope("urn:x"), identifier=SEQ, pending=0, address=ADDRESS, now=0.0
        )


def test_ordered_delivery_holds_messages_after_a_gap() -> None:
    destination = ReliableDestination()
    state = created(destination)
    state, actions = receive_all(destination, state, [2, 3], 1.0)
    assert delivered(actions) == []
    assert [m.number for m in state.held] == [2, 3]
    assert state.pending
    state, actions = destination.receive(state, message(1), 2.0)
    assert delivered(actions) == [1, 2, 3]
    assert actions[0] == Deliver(1, "urn:op", Payload(b"<m>1</m>"), "urn:m:1")
    assert state.held == ()
    assert state.delivered_up_to == 3
    assert not state.pending
    assert state.accepted
    state, actions = receive_all(destination, state, [2, 1, 3], 3.0)
    assert delivered(actions) == []  # duplicates are never delivered again


def test_unordered_delivery_delivers_on_arrival_exactly_once() -> None:
    destination = ReliableDestination(ReliableSessionSettings(ordered=False))
    state = created(destination)
    state, actions = receive_all(destination, state, [3, 1, 3, 2, 1], 1.0)
    assert delivered(actions) == [3, 1, 2]
    assert state.delivered_up_to == 3
    assert state.held == ()


def test_messages_beyond_the_window_are_dropped_silently() -> None:
    destination = ReliableDestination(ReliableSessionSettings(max_transfer_window_size=3))
    state = created(destination)
    state, actions = destination.receive(state, message(4), 1.0)
    assert 4 not in state.received
    assert sends(actions) == []
    assert delivered(actions) == []
    state, _ = destination.receive(state, message(3), 1.0)
    assert 3 in state.received
    assert len(state.held) <= 3


def test_acknowledgements_are_batched_for_the_acknowledgement_interval() -> None:
    destination = ReliableDestination()
    state = created(destination)
    state, actions = destination.receive(state, message(1), 10.0)
    assert sends(actions) == []
    assert state.ack_due_at == pytest.approx(10.2)
    state, actions = destination.receive(state, message(3), 10.1)
    assert state.ack_due_at == pytest.approx(10.2)  # not postponed by later messages
    due = state.ack_due_at
    assert due is not None
    assert destination.wakeup(state, 10.15) == (state, [ScheduleWakeup(due)])
    state, actions = destination.wakeup(state, 10.2)
    (ack,) = sends(actions)
    assert ack.to == ACKS
    assert ack.action == action_uri(RMAction.SEQUENCE_ACKNOWLEDGEMENT, V2005)
    assert ack.acknowledgements == (
        SequenceAcknowledgement(SEQ, (AckRange(1, 1), AckRange(3, 3)), buffer_remaining=7),
    )
    validate(codec.encode(ack, V2005))


def test_some_messages_are_acknowledged_at_once() -> None:
    destination = ReliableDestination()
    state = created(destination)
    state, actions = destination.receive(state, message(1, ack_requested=True), 1.0)
    assert len(sends(actions)) == 1
    assert state.ack_due_at is None
    state, actions = destination.receive(state, message(3), 1.0)
    assert sends(actions) == []
    assert state.ack_due_at is not None
    state, actions = destination.receive(state, message(2, last=True), 1.0)
    assert len(sends(actions)) == 1
    assert state.ack_due_at is None
    keep_alive = Envelope("urn:x", ack_requested=(AckRequested(SEQ),))
    assert len(sends(destination.receive(state, keep_alive, 2.0)[1])) == 1


def test_buffer_remaining_is_left_out_without_flow_control() -> None:
    without = ReliableDestination(ReliableSessionSettings(flow_control_enabled=False))
    assert without.acknowledgement(created(without)).buffer_remaining is None
    with_flow_control = ReliableDestination()
    state, _ = receive_all(with_flow_control, created(with_flow_control), [2, 3], 1.0)
    assert with_flow_control.acknowledgement(state).buffer_remaining == 6  # 2 held of 8


def test_inactivity_terminates_the_sequence_with_a_fault() -> None:
    destination = ReliableDestination()
    state = created(destination)
    state, _ = destination.receive(state, message(2), 100.0)
    state, actions = destination.wakeup(state, 699.9)
    assert state.status is DestinationStatus.OPEN
    state, actions = destination.wakeup(state, 700.0)
    fault = faults.inactivity_timeout_exceeded(SEQ, 600.0)
    assert fault.reason == "The inactivity timeout of (00:10:00) has been exceeded."
    assert actions == [Send(faults.fault_envelope(fault, V2005, to=ACKS)), Faulted(fault)]
    assert state.status is DestinationStatus.FAULTED
    assert destination.next_wakeup(state) is None
    validate(codec.encode(sends(actions)[0], V2005))
    # Anything more about the sequence is answered with the same fault.
    assert sends(destination.receive(state, message(1), 800.0)[1]) == sends(actions)


def test_completed_sequence_ends_normally_when_the_source_falls_silent() -> None:
    destination = ReliableDestination()
    state = created(destination)
    state, actions = destination.receive(state, message(1, last=True), 1.0)
    assert Completed() in actions
    assert state.completed
    state, actions = destination.wakeup(state, 601.0)
    assert (state.status, actions) == (DestinationStatus.TERMINATED, [Terminated()])


def test_february_2005_last_message() -> None:
    destination = ReliableDestination()
    state = created(destination)
    last = Envelope(
        action=action_uri(RMAction.LAST_MESSAGE, V2005),
        sequence=Sequence(SEQ, 2, last_message=True),
    )
    state, actions = destination.receive(state, last, 1.0)
    assert state.last_number == 2
    assert Completed() not in actions
    state, actions = destination.receive(state, message(1), 2.0)
    assert delivered(actions) == [1]  # the empty LastMessage is not for the application
    assert Completed() in actions
    state, actions = destination.receive(state, message(3), 3.0)
    fault = faults.last_message_number_exceeded(SEQ)
    assert sends(actions) == [faults.fault_envelope(fault, V2005, to=ACKS)]
    assert 3 not in state.received
    state, actions = destination.receive(state, Envelope("urn:t", body=TerminateSequence(SEQ)), 4.0)
    assert actions == [Terminated()]  # no response in February 2005
    assert state.status is DestinationStatus.TERMINATED


def test_ws_rm_1_1_close_then_terminate() -> None:
    destination = ReliableDestination(ReliableSessionSettings(version=V11))
    state = created(destination)
    state, _ = receive_all(destination, state, [1, 2], 1.0)
    close = rm_envelope(
        CloseSequence(SEQ, 2), V11, message_id="urn:uuid:close", reply_to=EndpointReference(ACKS)
    )
    state, actions = destination.receive(state, close, 2.0)
    assert state.status is DestinationStatus.CLOSED
    assert Completed() in actions
    (response,) = sends(actions)
    assert response.body == CloseSequenceResponse(SEQ)
    assert response.relates_to == "urn:uuid:close"
    assert response.acknowledgements == (
        SequenceAcknowledgement(SEQ, (AckRange(1, 2),), final=True, buffer_remaining=8),
    )
    validate(codec.encode(response, V11))
    assert sends(destination.receive(state, close, 2.5)[1]) == [response]  # response was lost
    state, actions = destination.receive(state, message(3), 3.0)
    assert sends(actions) == [faults.fault_envelope(faults.sequence_closed(SEQ), V11, to=ACKS)]
    assert delivered(destination.receive(state, message(2), 3.0)[1]) == []
    terminate = rm_envelope(TerminateSequence(SEQ, 2), V11, message_id="urn:uuid:term")
    state, actions = destination.receive(state, terminate, 4.0)
    assert state.status is DestinationStatus.TERMINATED
    assert Terminated() in actions
    (done,) = sends(actions)
    assert done.body == TerminateSequenceResponse(SEQ)
    assert done.relates_to == "urn:uuid:term"
    assert sends(destination.receive(state, terminate, 5.0)[1]) == [done]
    # The sequence is gone: anything else about it is answered as WCF does, UnknownSequence.
    after, actions = destination.receive(state, message(1), 5.0)
    assert after == state
    (unknown,) = sends(actions)
    assert unknown.body == faults.unknown_sequence(SEQ)
    validate(codec.encode(unknown, V11))


def test_close_with_a_last_number_below_what_was_received_is_a_protocol_fault() -> None:
    destination = ReliableDestination(ReliableSessionSettings(version=V11))
    state, _ = receive_all(destination, created(destination), [1, 2, 3], 1.0)
    state, actions = destination.receive(state, rm_envelope(CloseSequence(SEQ, 2), V11), 2.0)
    assert state.status is DestinationStatus.FAULTED
    assert isinstance(actions[-1], Faulted)
    assert actions[-1].fault.rm_code is not None


def test_early_terminate_sequence_faults_the_sequence() -> None:
    destination = ReliableDestination(ReliableSessionSettings(version=V11))
    state, _ = receive_all(destination, created(destination), [1, 3], 1.0)
    state, actions = destination.receive(state, rm_envelope(TerminateSequence(SEQ, 3), V11), 2.0)
    assert state.status is DestinationStatus.FAULTED
    assert isinstance(actions[0], Faulted)
    assert "before" in actions[0].fault.reason
    assert sends(actions)[0].body == TerminateSequenceResponse(SEQ)


def test_fault_from_the_source_faults_the_destination() -> None:
    destination = ReliableDestination()
    fault = faults.user_abort(SEQ)
    state, actions = destination.receive(
        created(destination), faults.fault_envelope(fault, V2005), 1.0
    )
    assert (state.status, actions) == (DestinationStatus.FAULTED, [Faulted(fault)])
    assert destination.receive(state, faults.fault_envelope(fault, V2005), 2.0) == (state, [])


def test_envelopes_about_other_sequences_are_ignored() -> None:
    destination = ReliableDestination()
    state = created(destination)
    other = Envelope("urn:op", sequence=Sequence("urn:other", 1))
    assert destination.receive(state, other, 1.0) == (state, [])


def test_unknown_sequences_are_refused() -> None:
    destination = ReliableDestination(ReliableSessionSettings(version=V11))
    for envelope in (
        message(1),
        Envelope("urn:x", ack_requested=(AckRequested(SEQ),)),
        rm_envelope(TerminateSequence(SEQ), V11, reply_to=EndpointReference(ACKS)),
    ):
        (refusal,) = sends(destination.refuse_unknown(envelope))
        assert refusal.body == faults.unknown_sequence(SEQ)
        validate(codec.encode(refusal, V11))
    assert destination.refuse_unknown(Envelope("urn:x")) == []
