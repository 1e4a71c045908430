"""The RM destination: acknowledges incoming messages and delivers each exactly once.

A pure state machine, like :mod:`~durable_sessions.wsrm.source`: :class:`DestinationSequenceState`
is plain data and :class:`ReliableDestination` maps (state, input, now) to (new state, actions).

Behaviour follows WCF: duplicates are acknowledged but not delivered again; in ordered sessions a
message after a gap is held until the gap fills; messages beyond the transfer window (more than
``max_transfer_window_size`` past the last contiguous one) are silently dropped for the source to
resend; acknowledgements are batched for ``acknowledgement_interval`` unless asked for, carry
``netrm:BufferRemaining`` under flow control and ``Final`` once closed (1.1); silence for
``inactivity_timeout`` terminates the sequence with a SequenceTerminated fault; a message to a
terminated sequence gets an UnknownSequence fault; more than
``max_pending_channels`` sequences awaiting the application refuse CreateSequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

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
from durable_sessions.wsrm.messages import (
    Accept,
    CloseSequence,
    CloseSequenceResponse,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    Fault,
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
    parse_action,
    reply_address,
    rm_envelope,
)
from durable_sessions.wsrm.ranges import RangeSet
from durable_sessions.wsrm.settings import ReliableSessionSettings

EARLY_TERMINATION = (
    "The RM Source terminated the sequence before the RM Destination received all its messages."
)
LAST_MESSAGE_NUMBER_TOO_LOW = (
    "The LastMsgNumber of the CloseSequence is lower than a message number already received."
)


class DestinationStatus(StrEnum):
    """Where a destination sequence is in its life."""

    OPEN = "open"
    CLOSED = "closed"
    TERMINATED = "terminated"
    FAULTED = "faulted"


_OVER = (DestinationStatus.TERMINATED, DestinationStatus.FAULTED)


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message received after a gap, held until the messages before it arrive."""

    number: int
    action: str
    payload: Payload | None
    message_id: str | None


@dataclass(frozen=True, slots=True)
class DestinationSequenceState:
    """Everything an RM destination must remember about one sequence.

    ``received`` is every message number seen (what acknowledgements report);
    ``delivered_up_to`` the end of the contiguous run handed to the application; ``held`` the
    messages received beyond a gap (ordered sessions). ``accepted`` turns true when the first
    message is delivered (the host counts pending sequences for ``max_pending_channels``).
    ``create_message_id`` lets a repeated CreateSequence get the same answer; ``offer`` is the
    reverse sequence the source offered (and was accepted).
    """

    identifier: str
    acks_to: str
    last_received: float
    status: DestinationStatus = DestinationStatus.OPEN
    accepted: bool = False
    received: RangeSet = field(default_factory=RangeSet)
    delivered_up_to: int = 0
    held: tuple[HeldMessage, ...] = ()
    last_number: int | None = None
    ack_due_at: float | None = None
    create_message_id: str | None = None
    offer: Offer | None = None
    fault: Fault | None = None

    @property
    def pending(self) -> bool:
        """Whether the sequence is open and has delivered nothing to the application yet."""
        return not self.accepted and self.status is DestinationStatus.OPEN

    @property
    def completed(self) -> bool:
        """Whether every message up to the last one has been delivered."""
        return self.last_number is not None and self.delivered_up_to >= self.last_number


Step = tuple[DestinationSequenceState, list[Action]]


@dataclass(frozen=True, slots=True)
class ReliableDestination:
    """The RM destination protocol engine for one settings profile; every method is pure."""

    settings: ReliableSessionSettings = field(default_factory=ReliableSessionSettings)

    @property
    def version(self) -> RMVersion:
        """The WS-RM version this destination speaks."""
        return self.settings.version

    # -- creating ---------------------------------------------------------------------------

    def create(
        self, request: Envelope, *, identifier: str, pending: int, address: str, now: float
    ) -> tuple[DestinationSequenceState | None, list[Action]]:
        """Answer a CreateSequence: a new sequence ``identifier``, or a refusal (None).

        ``pending`` is how many sequences of this endpoint wait to be accepted (WCF's pending
        channels of a listener); ``address`` is this endpoint's address.
        A repeated CreateSequence (same message id) must get :meth:`create_response` instead.
        """
        body = request.body
        if not isinstance(body, CreateSequence):
            raise TypeError("create() needs an envelope whose body is a CreateSequence")
        if pending >= self.settings.max_pending_channels:
            return None, self.refuse_busy(request, address)
        state = DestinationSequenceState(
            identifier,
            body.acks_to.address,
            last_received=now,
            create_message_id=request.message_id,
            offer=body.offer,
        )
        return self._finish(state, [Send(self.create_response(state, request, address))])

    def refuse_busy(self, request: Envelope, address: str) -> list[Action]:
        """Refuse CreateSequence ``request``: ``max_pending_channels`` sequences wait already."""
        fault = faults.connection_limit_reached(address)
        to = reply_address(request, fault=True)
        return [
            Send(faults.fault_envelope(fault, self.version, to=to, relates_to=request.message_id))
        ]

    def create_response(
        self, state: DestinationSequenceState, request: Envelope, address: str
    ) -> Envelope:
        """The CreateSequenceResponse for ``state`` (also the answer to a repeated request)."""
        behavior = (
            IncompleteSequenceBehavior.DISCARD_FOLLOWING_FIRST_GAP
            if self.version is RMVersion.WSRM_1_1
            else None
        )
        accept = Accept(EndpointReference(address)) if state.offer is not None else None
        body = CreateSequenceResponse(
            state.identifier, incomplete_sequence_behavior=behavior, accept=accept
        )
        return rm_envelope(
            body, self.version, to=reply_address(request), relates_to=request.message_id
        )

    def refuse_unknown(self, envelope: Envelope) -> list[Action]:
        """The answer to an envelope about a sequence this endpoint does not have."""
        identifier = envelope.sequence.identifier if envelope.sequence is not None else None
        body = envelope.body
        if isinstance(body, CloseSequence | TerminateSequence):
            identifier = body.identifier
        elif envelope.ack_requested and identifier is None:
            identifier = envelope.ack_requested[0].identifier
        if identifier is None:
            return []
        return self._unknown(identifier, envelope)

    def _unknown(self, identifier: str, envelope: Envelope) -> list[Action]:
        fault = faults.unknown_sequence(identifier)
        to = reply_address(envelope, fault=True)
        return [
            Send(faults.fault_envelope(fault, self.version, to=to, relates_to=envelope.message_id))
        ]

    # -- receiving --------------------------------------------------------------------------

    def receive(self, state: DestinationSequenceState, envelope: Envelope, now: float) -> Step:
        """Process an envelope from the source; envelopes about other sequences are ignored."""
        body = envelope.body
        if not self._concerns(state, envelope):
            return state, []
        if state.status is DestinationStatus.TERMINATED:
            # Answer a repeated Close/Terminate whose response was lost; anything else is about
            # a sequence that no longer exists, as WCF answers it: UnknownSequence.
            if isinstance(body, CloseSequence | TerminateSequence):
                if not self._has_responses:
                    return state, []
                return state, [Send(self._closing_response(state, envelope))]
            if isinstance(body, Fault):
                return state, []
            return state, self._unknown(state.identifier, envelope)
        if state.status is DestinationStatus.FAULTED:
            if isinstance(body, Fault) or state.fault is None:
                return state, []
            return state, [Send(self._fault_envelope(state, state.fault))]
        before = state
        state = replace(state, last_received=now)
        actions: list[Action] = []
        if isinstance(body, Fault):
            return self._fail(state, body, notify=False, actions=actions)
        if isinstance(body, CloseSequence):
            return self._close(state, envelope, body, actions)
        if isinstance(body, TerminateSequence):
            return self._terminate(before, state, envelope, body, actions)
        ack_now = any(r.identifier == state.identifier for r in envelope.ack_requested)
        sequence = envelope.sequence
        if sequence is not None and sequence.identifier == state.identifier:
            refusal = self._refusal(state, sequence)
            if refusal is not None:
                actions.append(Send(self._fault_envelope(state, refusal)))
                return self._finish(state, actions)
            if sequence.message_number > state.received.highest_contiguous() + self._window:
                return self._finish(state, actions)  # beyond the window: dropped, resent later
            state = self._accept(state, envelope, sequence, actions)
            ack_now = ack_now or sequence.last_message
            if not ack_now and state.ack_due_at is None:
                state = replace(state, ack_due_at=now + self.settings.acknowledgement_interval)
        if ack_now:
            state = replace(state, ack_due_at=None)
            actions.append(Send(self._ack_envelope(state)))
        if state.completed and not before.completed:
            actions.append(Completed())
        return self._finish(state, actions)

    def _concerns(self, state: DestinationSequenceState, envelope: Envelope) -> bool:
        identifier = state.identifier
        sequence = envelope.sequence
        return (
            (sequence is not None and sequence.identifier == identifier)
            or any(r.identifier == identifier for r in envelope.ack_requested)
            or getattr(envelope.body, "identifier", None) == identifier
        )

    @property
    def _has_responses(self) -> bool:
        # February 2005 has no CloseSequence and no TerminateSequenceResponse.
        return self.version is RMVersion.WSRM_1_1

    @property
    def _window(self) -> int:
        return self.settings.max_transfer_window_size

    def _refusal(self, state: DestinationSequenceState, sequence: Sequence) -> Fault | None:
        number = sequence.message_number
        if number in state.received:
            return None
        if state.status is DestinationStatus.CLOSED:
            return faults.sequence_closed(state.identifier)
        if state.last_number is not None and number > state.last_number:
            return faults.last_message_number_exceeded(state.identifier)
        return None

    def _accept(
        self,
        state: DestinationSequenceState,
        envelope: Envelope,
        sequence: Sequence,
        actions: list[Action],
    ) -> DestinationSequenceState:
        number = sequence.message_number
        if number in state.received:
            return state  # a duplicate: acknowledged again, never delivered again
        state = replace(state, received=state.received.add(number))
        if sequence.last_message:
            state = replace(state, last_number=number)
        arrived = HeldMessage(number, envelope.action, self._payload(envelope), envelope.message_id)
        if self.settings.ordered and number != state.delivered_up_to + 1:
            held = tuple(sorted((*state.held, arrived), key=lambda m: m.number))
            return replace(state, held=held)
        ready, waiting = [arrived], list(state.held)
        while waiting and waiting[0].number == ready[-1].number + 1:
            ready.append(waiting.pop(0))
        delivered = [self._deliver(message, actions) for message in ready]
        return replace(
            state,
            held=tuple(waiting),
            delivered_up_to=state.received.highest_contiguous(),
            accepted=state.accepted or any(delivered),
        )

    @staticmethod
    def _payload(envelope: Envelope) -> Payload | None:
        return envelope.body if isinstance(envelope.body, Payload) else None

    @staticmethod
    def _deliver(message: HeldMessage, actions: list[Action]) -> bool:
        protocol = parse_action(message.action)
        if protocol is not None and protocol[1] is RMAction.LAST_MESSAGE:
            return False  # February 2005's empty LastMessage ends the sequence: not for the app
        actions.append(Deliver(message.number, message.action, message.payload, message.message_id))
        return True

    # -- acknowledging ----------------------------------------------------------------------

    def _buffer_remaining(self, state: DestinationSequenceState) -> int:
        return self._window - len(state.held)

    def acknowledgement(self, state: DestinationSequenceState) -> SequenceAcknowledgement:
        """The acknowledgement ``state`` warrants now."""
        final = self.version is RMVersion.WSRM_1_1 and state.status is not DestinationStatus.OPEN
        remaining = self._buffer_remaining(state) if self.settings.flow_control_enabled else None
        return SequenceAcknowledgement(
            state.identifier, state.received.ranges, final=final, buffer_remaining=remaining
        )

    def _ack_envelope(self, state: DestinationSequenceState) -> Envelope:
        return Envelope(
            action=action_uri(RMAction.SEQUENCE_ACKNOWLEDGEMENT, self.version),
            to=state.acks_to,
            acknowledgements=(self.acknowledgement(state),),
        )

    # -- closing ----------------------------------------------------------------------------

    def _close(
        self,
        state: DestinationSequenceState,
        request: Envelope,
        body: CloseSequence,
        actions: list[Action],
    ) -> Step:
        if state.status is DestinationStatus.OPEN:
            highest = state.received.highest()
            last = body.last_msg_number
            if last is not None and last < highest:
                fault = faults.sequence_terminated(
                    state.identifier, LAST_MESSAGE_NUMBER_TOO_LOW, sender=True
                )
                return self._fail(state, fault, notify=True, actions=actions)
            state = replace(
                state,
                status=DestinationStatus.CLOSED,
                last_number=highest if last is None else last,
            )
            if state.completed:
                actions.append(Completed())
        state = replace(state, ack_due_at=None)
        actions.append(Send(self._closing_response(state, request)))
        return self._finish(state, actions)

    def _terminate(
        self,
        before: DestinationSequenceState,
        state: DestinationSequenceState,
        request: Envelope,
        body: TerminateSequence,
        actions: list[Action],
    ) -> Step:
        last = body.last_msg_number or state.last_number or state.received.highest()
        if state.received.covers(1, last):
            state = replace(
                state, status=DestinationStatus.TERMINATED, last_number=last, ack_due_at=None
            )
            if not before.completed:
                actions.append(Completed())
            actions.append(Terminated())
        else:
            fault = faults.sequence_terminated(state.identifier, EARLY_TERMINATION, sender=True)
            state = self._fail(state, fault, notify=False, actions=actions)[0]
        if self._has_responses:
            actions.append(Send(self._closing_response(state, request)))
        return state, actions

    def _closing_response(self, state: DestinationSequenceState, request: Envelope) -> Envelope:
        body: CloseSequenceResponse | TerminateSequenceResponse
        if isinstance(request.body, CloseSequence):
            body = CloseSequenceResponse(state.identifier)
        else:
            body = TerminateSequenceResponse(state.identifier)
        return rm_envelope(
            body,
            self.version,
            to=reply_address(request),
            relates_to=request.message_id,
            acknowledgements=(self.acknowledgement(state),),
        )

    # -- time -------------------------------------------------------------------------------

    def wakeup(self, state: DestinationSequenceState, now: float) -> Step:
        """Send a due acknowledgement, or end the sequence after the inactivity timeout.

        A sequence whose messages have all been delivered ends normally when its source falls
        silent (a February 2005 TerminateSequence is one-way and may be lost); any other one is
        terminated with a SequenceTerminated fault.
        """
        if state.status in _OVER:
            return state, []
        actions: list[Action] = []
        timeout = self.settings.inactivity_timeout
        if now >= state.last_received + timeout:
            if state.completed:
                ended = replace(state, status=DestinationStatus.TERMINATED, ack_due_at=None)
                return ended, [Terminated()]
            fault = faults.inactivity_timeout_exceeded(state.identifier, timeout)
            return self._fail(state, fault, notify=True, actions=actions)
        if state.ack_due_at is not None and now >= state.ack_due_at:
            state = replace(state, ack_due_at=None)
            actions.append(Send(self._ack_envelope(state)))
        return self._finish(state, actions)

    def next_wakeup(self, state: DestinationSequenceState) -> float | None:
        """When :meth:`wakeup` next has something to do (None once the sequence is over)."""
        if state.status in _OVER:
            return None
        inactive = state.last_received + self.settings.inactivity_timeout
        return inactive if state.ack_due_at is None else min(inactive, state.ack_due_at)

    # -- failing ----------------------------------------------------------------------------

    def _fault_envelope(self, state: DestinationSequenceState, fault: Fault) -> Envelope:
        # Faults about a known sequence go to its AcksTo endpoint.
        return faults.fault_envelope(fault, self.version, to=state.acks_to)

    def _fail(
        self,
        state: DestinationSequenceState,
        fault: Fault,
        *,
        notify: bool,
        actions: list[Action],
    ) -> Step:
        if notify:
            actions.append(Send(self._fault_envelope(state, fault)))
        actions.append(Faulted(fault))
        failed = replace(state, status=DestinationStatus.FAULTED, ack_due_at=None, fault=fault)
        return failed, actions

    def _finish(self, state: DestinationSequenceState, actions: list[Action]) -> Step:
        wake = self.next_wakeup(state)
        if wake is not None:
            actions.append(ScheduleWakeup(wake))
        return state, actions
