"""The RM source: numbers outgoing messages and retransmits them until they are acknowledged.

A pure state machine. :class:`SourceSequenceState` is plain data (store it, restore it after a
crash, continue); :class:`ReliableSource` turns (state, input, now) into (new state, actions).
It never reads a clock or does I/O: the caller passes ``now`` (seconds, any fixed origin), carries
out the returned :mod:`~durable_sessions.wsrm.actions` and calls :meth:`ReliableSource.wakeup` at
the time the last ``ScheduleWakeup`` asked for (early or repeated calls are harmless).

Behaviour follows WCF: a transfer window of unacknowledged messages, retransmission with
exponential backoff (``initial_retry_interval`` doubling) and a fault after ``max_retry_count``
retries, flow control from the destination's ``netrm:BufferRemaining``, AckRequested keep-alives
after half the inactivity timeout, and the closing handshake of each WS-RM version (February 2005:
a LastMessage then TerminateSequence; 1.1: CloseSequence then TerminateSequence).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum

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
    AckRequested,
    CloseSequence,
    CloseSequenceResponse,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    Fault,
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
from durable_sessions.wsrm.ranges import RangeSet
from durable_sessions.wsrm.settings import ReliableSessionSettings


class SourceStatus(StrEnum):
    """Where a source sequence is in its life."""

    CREATING = "creating"
    OPEN = "open"
    CLOSING = "closing"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAULTED = "faulted"


_OVER = (SourceStatus.TERMINATED, SourceStatus.FAULTED)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A sent message kept until acknowledged: what to retransmit, how often so far, and when."""

    number: int
    action: str
    payload: Payload | None
    message_id: str | None
    last_message: bool
    attempts: int
    next_retry_at: float


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A CreateSequence, CloseSequence or TerminateSequence awaiting its response."""

    action: RMAction
    message_id: str
    attempts: int
    next_retry_at: float


@dataclass(frozen=True, slots=True)
class SourceSequenceState:
    """Everything an RM source must remember about one sequence.

    ``to`` is the destination's address and ``acks_to`` where acknowledgements should go.
    ``quota`` is how many more new messages the destination can buffer (None until it says).
    ``last_received``/``last_sent`` drive the inactivity timeout and keep-alives. ``fault`` is
    why the sequence faulted; ``unacknowledged`` is kept then, for dead-lettering.
    """

    status: SourceStatus
    to: str
    acks_to: str
    last_received: float
    last_sent: float
    identifier: str | None = None
    request: PendingRequest | None = None
    next_number: int = 1
    acknowledged: RangeSet = field(default_factory=RangeSet)
    unacknowledged: tuple[OutboundMessage, ...] = ()
    quota: int | None = None
    last_number: int | None = None
    fault: Fault | None = None


Step = tuple[SourceSequenceState, list[Action]]


@dataclass(frozen=True, slots=True)
class ReliableSource:
    """The RM source protocol engine for one settings profile; every method is pure."""

    settings: ReliableSessionSettings = field(default_factory=ReliableSessionSettings)

    @property
    def version(self) -> RMVersion:
        """The WS-RM version this source speaks."""
        return self.settings.version

    # -- starting ---------------------------------------------------------------------------

    def create(self, *, to: str, acks_to: str, message_id: str, now: float) -> Step:
        """Start a sequence: send CreateSequence (``message_id`` correlates the response)."""
        request = PendingRequest(RMAction.CREATE_SEQUENCE, message_id, 1, now + self._interval(1))
        state = SourceSequenceState(
            SourceStatus.CREATING, to, acks_to, last_received=now, last_sent=now, request=request
        )
        return self._finish(state, [Send(self._request_envelope(state, request))])

    def open_offered(
        self, *, identifier: str, to: str, acks_to: str, now: float
    ) -> SourceSequenceState:
        """An open sequence the peer offered in its CreateSequence and we accepted."""
        return SourceSequenceState(
            SourceStatus.OPEN,
            to,
            acks_to,
            last_received=now,
            last_sent=now,
            identifier=identifier,
        )

    # -- sending ----------------------------------------------------------------------------

    def available(self, state: SourceSequenceState) -> int:
        """How many new messages :meth:`send` accepts right now (window and flow control)."""
        return self._room(state) if state.status is SourceStatus.OPEN else 0

    def send(
        self,
        state: SourceSequenceState,
        *,
        action: str,
        payload: Payload | None,
        now: float,
        message_id: str | None = None,
    ) -> Step:
        """Number and send an application message; it is retransmitted until acknowledged."""
        if state.status is not SourceStatus.OPEN:
            raise SequenceNotOpen(state.identifier, state.status, "send a message")
        if state.next_number > MAX_MESSAGE_NUMBER:
            raise SequenceExhausted(state.identifier)
        if self._room(state) < 1:
            raise TransferWindowFull(state.identifier)
        state, envelope = self._add(state, action, payload, message_id, now)
        return self._finish(state, [Send(envelope)])

    def _room(self, state: SourceSequenceState) -> int:
        start = state.unacknowledged[0].number if state.unacknowledged else state.next_number
        room = start + self.settings.max_transfer_window_size - state.next_number
        if self.settings.flow_control_enabled and state.quota is not None:
            room = min(room, state.quota)
        return max(0, min(room, MAX_MESSAGE_NUMBER + 1 - state.next_number))

    def _add(
        self,
        state: SourceSequenceState,
        action: str,
        payload: Payload | None,
        message_id: str | None,
        now: float,
        *,
        last: bool = False,
    ) -> tuple[SourceSequenceState, Envelope]:
        message = OutboundMessage(
            state.next_number, action, payload, message_id, last, 1, now + self._interval(1)
        )
        quota = None if state.quota is None else state.quota - 1
        state = replace(
            state,
            next_number=state.next_number + 1,
            unacknowledged=(*state.unacknowledged, message),
            quota=quota,
            last_sent=now,
        )
        # Ask for an acknowledgement as soon as the window (or the peer's buffer) is full.
        return state, self._message_envelope(state, message, ack_requested=self._room(state) == 0)

    def _message_envelope(
        self, state: SourceSequenceState, message: OutboundMessage, *, ack_requested: bool
    ) -> Envelope:
        identifier = state.identifier or ""
        return Envelope(
            action=message.action,
            body=message.payload,
            to=state.to,
            message_id=message.message_id,
            sequence=Sequence(identifier, message.number, last_message=message.last_message),
            ack_requested=(AckRequested(identifier),) if ack_requested else (),
        )

    def _request_envelope(self, state: SourceSequenceState, request: PendingRequest) -> Envelope:
        body: CreateSequence | CloseSequence | TerminateSequence
        identifier = state.identifier or ""
        last = state.next_number - 1 or None
        if request.action is RMAction.CREATE_SEQUENCE:
            body = CreateSequence(EndpointReference(state.acks_to))
        elif request.action is RMAction.CLOSE_SEQUENCE:
            body = CloseSequence(identifier, last)
        else:
            body = TerminateSequence(
                identifier, last if self.version is RMVersion.WSRM_1_1 else None
            )
        return rm_envelope(
            body,
            self.version,
            to=state.to,
            message_id=request.message_id,
            reply_to=EndpointReference(state.acks_to),
        )

    # -- receiving --------------------------------------------------------------------------

    def receive(self, state: SourceSequenceState, envelope: Envelope, now: float) -> Step:
        """Process an envelope from the destination (responses, acknowledgements, faults).

        Envelopes about other sequences are ignored.
        """
        if state.status in _OVER or not self._concerns(state, envelope):
            return state, []
        state = replace(state, last_received=now)
        body = envelope.body
        actions: list[Action] = []
        if isinstance(body, Fault):
            return self._fail(state, body, notify=False, actions=actions)
        if isinstance(body, CreateSequenceResponse) and self._answers(
            state, envelope, RMAction.CREATE_SEQUENCE
        ):
            state = replace(
                state, status=SourceStatus.OPEN, identifier=body.identifier, request=None
            )
        for ack in envelope.acknowledgements:
            if ack.identifier == state.identifier:
                state = self._acknowledge(state, ack, now, actions)
                if state.status is SourceStatus.FAULTED:
                    return self._finish(state, actions)
        if isinstance(body, CloseSequenceResponse) and self._answers(
            state, envelope, RMAction.CLOSE_SEQUENCE
        ):
            request = self._request(body.identifier, RMAction.TERMINATE_SEQUENCE, now)
            state = replace(state, status=SourceStatus.TERMINATING, request=request, last_sent=now)
            actions.append(Send(self._request_envelope(state, request)))
        elif isinstance(body, TerminateSequenceResponse) and self._answers(
            state, envelope, RMAction.TERMINATE_SEQUENCE
        ):
            state = replace(state, status=SourceStatus.TERMINATED, request=None)
            actions.append(Terminated())
        return self._finish(self._progress_close(state, now, actions), actions)

    def _concerns(self, state: SourceSequenceState, envelope: Envelope) -> bool:
        if state.request is not None and envelope.relates_to == state.request.message_id:
            return True
        body = envelope.body
        identifier = getattr(body, "identifier", None)
        return state.identifier is not None and (
            identifier == state.identifier
            or any(ack.identifier == state.identifier for ack in envelope.acknowledgements)
        )

    def _answers(self, state: SourceSequenceState, envelope: Envelope, action: RMAction) -> bool:
        request = state.request
        return (
            request is not None
            and request.action is action
            and (envelope.relates_to in (None, request.message_id))
        )

    def _acknowledge(
        self,
        state: SourceSequenceState,
        ack: SequenceAcknowledgement,
        now: float,
        actions: list[Action],
    ) -> SourceSequenceState:
        sent = state.next_number - 1
        acknowledged = state.acknowledged.union(RangeSet.of(ack.ranges))
        if (
            any(r.upper > sent for r in ack.ranges)
            or any(n > sent for n in ack.nacks)
            or (ack.final and not acknowledged.covers(1, sent))
        ):
            return self._fail(
                state, faults.invalid_acknowledgement(ack), notify=True, actions=actions
            )[0]
        confirmed = [m for m in state.unacknowledged if m.number in acknowledged]
        newly = tuple(m.number for m in confirmed if not m.last_message)  # the application's
        remaining = tuple(m for m in state.unacknowledged if m.number not in acknowledged)
        quota = state.quota
        if self.settings.flow_control_enabled and ack.buffer_remaining is not None:
            advertised = ack.buffer_remaining - len(remaining)
            # An acknowledgement that confirms nothing new may be a late, stale copy: let it
            # raise the quota but never lower it.
            quota = advertised if confirmed or quota is None else max(quota, advertised)
        state = replace(state, acknowledged=acknowledged, unacknowledged=remaining, quota=quota)
        if newly:
            actions.append(Acknowledged(newly))
        nacked = [m for m in remaining if m.number in ack.nacks]
        return self._retransmit(state, nacked, now, actions)

    # -- time -------------------------------------------------------------------------------

    def wakeup(self, state: SourceSequenceState, now: float) -> Step:
        """Retransmit what is due, send keep-alives, and fault on inactivity or retry exhaustion."""
        if state.status in _OVER:
            return state, []
        actions: list[Action] = []
        timeout = self.settings.inactivity_timeout
        if now >= state.last_received + timeout:
            fault = faults.inactivity_timeout_exceeded(state.identifier or "", timeout)
            return self._fail(state, fault, notify=state.identifier is not None, actions=actions)
        request = state.request
        if request is not None and now >= request.next_retry_at:
            if request.attempts > self.settings.max_retry_count:
                return self._exhausted(state, actions)
            request = replace(
                request,
                attempts=request.attempts + 1,
                next_retry_at=now + self._interval(request.attempts + 1),
            )
            state = replace(state, request=request, last_sent=now)
            actions.append(Send(self._request_envelope(state, request)))
        due = [m for m in state.unacknowledged if now >= m.next_retry_at]
        state = self._retransmit(state, due, now, actions)
        if state.status is SourceStatus.FAULTED:
            return state, actions
        if (
            state.identifier is not None
            and state.status in (SourceStatus.OPEN, SourceStatus.CLOSING)
            and now >= state.last_sent + timeout / 2
        ):
            keep_alive = Envelope(
                action=action_uri(RMAction.ACK_REQUESTED, self.version),
                to=state.to,
                ack_requested=(AckRequested(state.identifier),),
            )
            state = replace(state, last_sent=now)
            actions.append(Send(keep_alive))
        return self._finish(self._progress_close(state, now, actions), actions)

    def next_wakeup(self, state: SourceSequenceState) -> float | None:
        """When :meth:`wakeup` next has something to do (None once the sequence is over)."""
        if state.status in _OVER:
            return None
        timeout = self.settings.inactivity_timeout
        times = [state.last_received + timeout]
        times.extend(m.next_retry_at for m in state.unacknowledged)
        if state.request is not None:
            times.append(state.request.next_retry_at)
        if state.identifier is not None and state.status in (
            SourceStatus.OPEN,
            SourceStatus.CLOSING,
        ):
            times.append(state.last_sent + timeout / 2)
        return min(times)

    def _interval(self, attempts: int) -> float:
        # Wait after the attempts-th transmission: initial, then doubling (capped: no overflow).
        return math.ldexp(self.settings.initial_retry_interval, min(attempts - 1, 64))

    def _retransmit(
        self,
        state: SourceSequenceState,
        messages: list[OutboundMessage],
        now: float,
        actions: list[Action],
    ) -> SourceSequenceState:
        if not messages:
            return state
        if any(m.attempts > self.settings.max_retry_count for m in messages):
            return self._exhausted(state, actions)[0]
        again = {
            m.number: replace(
                m, attempts=m.attempts + 1, next_retry_at=now + self._interval(m.attempts + 1)
            )
            for m in messages
        }
        state = replace(
            state,
            unacknowledged=tuple(again.get(m.number, m) for m in state.unacknowledged),
            last_sent=now,
        )
        actions.extend(
            Send(self._message_envelope(state, m, ack_requested=True)) for m in again.values()
        )
        return state

    # -- closing and failing ----------------------------------------------------------------

    def close(self, state: SourceSequenceState, now: float) -> Step:
        """Finish the sequence gracefully once every message is acknowledged."""
        if state.status in (SourceStatus.CLOSING, SourceStatus.TERMINATING):
            return state, []
        if state.status is not SourceStatus.OPEN:
            raise SequenceNotOpen(state.identifier, state.status, "close")
        actions: list[Action] = []
        state = replace(state, status=SourceStatus.CLOSING)
        return self._finish(self._progress_close(state, now, actions), actions)

    def abort(self, state: SourceSequenceState, now: float, reason: str | None = None) -> Step:
        """Give up on the sequence now, telling the destination (SequenceTerminated).

        ``reason`` is the fault's reason; WCF's for a user abort without one.
        """
        if state.status in _OVER:
            return state, []
        identifier = state.identifier or ""
        fault = (
            faults.user_abort(identifier)
            if reason is None
            else faults.sequence_terminated(identifier, reason, sender=False)
        )
        return self._fail(state, fault, notify=state.identifier is not None, actions=[])

    def _progress_close(
        self, state: SourceSequenceState, now: float, actions: list[Action]
    ) -> SourceSequenceState:
        identifier = state.identifier
        if state.status is not SourceStatus.CLOSING or identifier is None:
            return state
        if self.version is RMVersion.WSRM_1_1:
            if state.request is None and not state.unacknowledged:
                request = self._request(identifier, RMAction.CLOSE_SEQUENCE, now)
                state = replace(
                    state, request=request, last_number=state.next_number - 1, last_sent=now
                )
                actions.append(Send(self._request_envelope(state, request)))
            return state
        if state.last_number is None:
            if self._room(state) > 0:
                last_action = action_uri(RMAction.LAST_MESSAGE, self.version)
                state, envelope = self._add(state, last_action, None, None, now, last=True)
                state = replace(state, last_number=state.next_number - 1)
                actions.append(Send(envelope))
        elif not state.unacknowledged:
            # February 2005 has no TerminateSequenceResponse: the sequence ends on sending it.
            request = self._request(identifier, RMAction.TERMINATE_SEQUENCE, now)
            actions.append(Send(self._request_envelope(state, request)))
            actions.append(Terminated())
            state = replace(state, status=SourceStatus.TERMINATED, last_sent=now)
        return state

    def _request(self, identifier: str, action: RMAction, now: float) -> PendingRequest:
        # The message id is derived, not random (the engine is deterministic), and stays the
        # same on every retransmission.
        message_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{identifier}#{action.value}").urn
        return PendingRequest(action, message_id, 1, now + self._interval(1))

    def _exhausted(self, state: SourceSequenceState, actions: list[Action]) -> Step:
        fault = faults.max_retry_count_exceeded(state.identifier or "")
        return self._fail(state, fault, notify=state.identifier is not None, actions=actions)

    def _fail(
        self, state: SourceSequenceState, fault: Fault, *, notify: bool, actions: list[Action]
    ) -> Step:
        if notify:
            actions.append(Send(faults.fault_envelope(fault, self.version, to=state.to)))
        actions.append(Faulted(fault))
        return replace(state, status=SourceStatus.FAULTED, request=None, fault=fault), actions

    def _finish(self, state: SourceSequenceState, actions: list[Action]) -> Step:
        wake = self.next_wakeup(state)
        if wake is not None:
            actions.append(ScheduleWakeup(wake))
        return state, actions
