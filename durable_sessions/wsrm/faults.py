"""The standard WS-RM faults, with WCF's reason texts, and the envelopes that carry them.

Reason texts are WCF's resource strings where ``reference/wcf-semantics.md`` gives them (inactivity,
retry count, connection limit, abort, sequence closed) and the WS-RM specification's otherwise,
which WCF also uses (e.g. UnknownSequence). Two faults of WCF's dispatcher answer calls it
refuses: ActionNotSupported (a WS-Addressing fault) and SessionTerminated.
"""

from __future__ import annotations

from durable_sessions.wsrm.messages import (
    WSA_FAULT_ACTION,
    WSA_SOAP_FAULT_ACTION,
    AddressingFaultCode,
    Envelope,
    Fault,
    FaultCode,
    NetRMFaultCode,
    QName,
    RMAction,
    RMFaultCode,
    RMVersion,
    SequenceAcknowledgement,
    action_uri,
)

INACTIVITY_TIMEOUT_EXCEEDED = "The inactivity timeout of ({0}) has been exceeded."
MAX_RETRY_COUNT_EXCEEDED = (
    "The user specified maximum retry count for a particular message has been exceeded. "
    "Because of this the reliable session cannot continue."
)
USER_ABORT = "Due to a user abort the reliable session cannot continue."
SERVER_TOO_BUSY = "Server '{0}' is too busy to process this request. Try again later."
CREATE_SEQUENCE_REFUSED = "The Create Sequence request has been refused by the RM Destination."
UNKNOWN_SEQUENCE = "The value of wsrm:Identifier is not a known Sequence identifier."
INVALID_ACKNOWLEDGEMENT = (
    "The SequenceAcknowledgement violates the cumulative acknowledgement invariant."
)
MESSAGE_NUMBER_ROLLOVER = "The maximum value for wsrm:MessageNumber has been exceeded."
SEQUENCE_CLOSED = "The Sequence is closed and cannot accept new messages."
WSRM_REQUIRED = "The RM Destination requires the use of WSRM."
LAST_MESSAGE_NUMBER_EXCEEDED = (
    "The value for wsrm:MessageNumber exceeds the value of the MessageNumber accompanying a "
    "LastMessage element in this Sequence."
)

ACTION_NOT_SUPPORTED = (
    "The message with Action '{0}' cannot be processed at the receiver, due to a ContractFilter "
    "mismatch at the EndpointDispatcher. This may be because of either a contract mismatch "
    "(mismatched Actions between sender and receiver) or a binding/security mismatch between the "
    "sender and the receiver.  Check that sender and receiver have the same contract and the same "
    "binding (including security requirements, e.g. Message, Transport, None)."
)
CHANNEL_TERMINATED = (
    "An operation marked as IsTerminating has already been invoked on this channel, causing the "
    "channel's connection to terminate. No more operations may be invoked on this channel. Please "
    "re-create the channel to continue communication."
)
DISPATCHER_NAMESPACE = (
    "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"
)
"""The namespace of WCF's dispatcher fault codes (SessionTerminated)."""
DISPATCHER_FAULT_ACTION = f"{DISPATCHER_NAMESPACE}/fault"
"""The action of WCF's dispatcher faults."""
SESSION_TERMINATED = QName(DISPATCHER_NAMESPACE, "SessionTerminated")


def timespan(seconds: float) -> str:
    """``seconds`` as .NET prints a TimeSpan (``[d.]hh:mm:ss[.fffffff]``), e.g. ``00:10:00``."""
    ticks = round(seconds * 10_000_000)
    sign = "-" if ticks < 0 else ""
    whole, fraction = divmod(abs(ticks), 10_000_000)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}{f'{days}.' if days else ''}{hours:02}:{minutes:02}:{secs:02}"
    return f"{text}.{fraction:07}" if fraction else text


def sequence_terminated(identifier: str, reason: str, *, sender: bool) -> Fault:
    """SequenceTerminated: the sequence cannot go on (``sender``: the peer broke the rules)."""
    code = FaultCode.SENDER if sender else FaultCode.RECEIVER
    return Fault(code, reason, (RMFaultCode.SEQUENCE_TERMINATED,), identifier=identifier)


def inactivity_timeout_exceeded(identifier: str, timeout: float) -> Fault:
    """SequenceTerminated because nothing arrived from the peer for ``timeout`` seconds."""
    reason = INACTIVITY_TIMEOUT_EXCEEDED.format(timespan(timeout))
    return sequence_terminated(identifier, reason, sender=False)


def max_retry_count_exceeded(identifier: str) -> Fault:
    """SequenceTerminated because a message was retransmitted MaxRetryCount times unanswered."""
    return sequence_terminated(identifier, MAX_RETRY_COUNT_EXCEEDED, sender=False)


def user_abort(identifier: str) -> Fault:
    """SequenceTerminated because the local side aborted the session."""
    return sequence_terminated(identifier, USER_ABORT, sender=False)


def unknown_sequence(identifier: str) -> Fault:
    """UnknownSequence: no sequence has this identifier (any more)."""
    return Fault(
        FaultCode.SENDER, UNKNOWN_SEQUENCE, (RMFaultCode.UNKNOWN_SEQUENCE,), identifier=identifier
    )


def invalid_acknowledgement(acknowledgement: SequenceAcknowledgement) -> Fault:
    """InvalidAcknowledgement: the acknowledgement covers messages that were never sent."""
    return Fault(
        FaultCode.SENDER,
        INVALID_ACKNOWLEDGEMENT,
        (RMFaultCode.INVALID_ACKNOWLEDGEMENT,),
        identifier=acknowledgement.identifier,
        acknowledgement=acknowledgement,
    )


def message_number_rollover(identifier: str) -> Fault:
    """MessageNumberRollover: a message number went beyond 2^63-1."""
    return Fault(
        FaultCode.SENDER,
        MESSAGE_NUMBER_ROLLOVER,
        (RMFaultCode.MESSAGE_NUMBER_ROLLOVER,),
        identifier=identifier,
    )


def sequence_closed(identifier: str) -> Fault:
    """SequenceClosed: a message arrived after CloseSequence (1.1)."""
    return Fault(
        FaultCode.SENDER, SEQUENCE_CLOSED, (RMFaultCode.SEQUENCE_CLOSED,), identifier=identifier
    )


def last_message_number_exceeded(identifier: str) -> Fault:
    """LastMessageNumberExceeded: a message numbered after the LastMessage (February 2005)."""
    return Fault(
        FaultCode.SENDER,
        LAST_MESSAGE_NUMBER_EXCEEDED,
        (RMFaultCode.LAST_MESSAGE_NUMBER_EXCEEDED,),
        identifier=identifier,
    )


def wsrm_required(version: RMVersion = RMVersion.WSRM_1_1) -> Fault:
    """WSRMRequired: the endpoint accepts messages only inside a sequence.

    February 2005 has no such subcode: there it is a plain Sender fault with the same reason.
    """
    if version is RMVersion.WSRM_2005_02:
        return Fault(FaultCode.SENDER, WSRM_REQUIRED)
    return Fault(FaultCode.SENDER, WSRM_REQUIRED, (RMFaultCode.WSRM_REQUIRED,))


def create_sequence_refused(reason: str = CREATE_SEQUENCE_REFUSED) -> Fault:
    """CreateSequenceRefused for a reason other than load."""
    return Fault(FaultCode.SENDER, reason, (RMFaultCode.CREATE_SEQUENCE_REFUSED,))


def connection_limit_reached(endpoint: str) -> Fault:
    """CreateSequenceRefused/ConnectionLimitReached: MaxPendingChannels sequences await accept.

    WCF sends it as a Receiver fault and its clients raise ServerTooBusyException.
    """
    return Fault(
        FaultCode.RECEIVER,
        SERVER_TOO_BUSY.format(endpoint),
        (RMFaultCode.CREATE_SEQUENCE_REFUSED, NetRMFaultCode.CONNECTION_LIMIT_REACHED),
    )


def action_not_supported(action: str) -> Fault:
    """ActionNotSupported: no operation of the contract takes ``action`` (here, or here first)."""
    return Fault(
        FaultCode.SENDER,
        ACTION_NOT_SUPPORTED.format(action),
        (AddressingFaultCode.ACTION_NOT_SUPPORTED,),
    )


def session_terminated(reason: str = CHANNEL_TERMINATED) -> Fault:
    """SessionTerminated: the session takes no more calls (its terminating operation was called)."""
    return Fault(FaultCode.SENDER, reason, (SESSION_TERMINATED,))


def fault_action(fault: Fault, version: RMVersion) -> str:
    """The action a fault travels with: WS-RM's fault action (1.1) or WCF's choices otherwise."""
    first = fault.subcodes[0] if fault.subcodes else None
    if first == SESSION_TERMINATED:
        return DISPATCHER_FAULT_ACTION
    if isinstance(first, RMFaultCode):
        if version is RMVersion.WSRM_1_1:
            return action_uri(RMAction.FAULT, version)
        return WSA_SOAP_FAULT_ACTION
    if isinstance(first, AddressingFaultCode):
        return WSA_FAULT_ACTION
    return WSA_SOAP_FAULT_ACTION


def fault_envelope(
    fault: Fault,
    version: RMVersion,
    *,
    to: str | None = None,
    relates_to: str | None = None,
) -> Envelope:
    """An envelope carrying ``fault`` with the right action."""
    return Envelope(action=fault_action(fault, version), body=fault, to=to, relates_to=relates_to)
