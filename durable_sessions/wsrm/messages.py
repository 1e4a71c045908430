"""WS-ReliableMessaging messages as plain values, the same for every RM version.

The codec (:mod:`durable_sessions.wsrm.xml`) writes these values as SOAP 1.2 envelopes in
WS-RM February 2005 (WCF's default) or WS-RM 1.1 and reads them back from either; nothing here
knows about XML. Application bodies stay opaque (:class:`Payload`), so the rest of the system never
needs an XML library.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from durable_sessions.errors import ConfigurationError
from durable_sessions.wsrm.lexical import is_absolute_uri, is_duration

MAX_MESSAGE_NUMBER = 2**63 - 1
"""Highest message number (xs:long's maximum, as WS-RM 1.1 and WCF define it)."""

NETRM_NAMESPACE = "http://schemas.microsoft.com/ws/2006/05/rm"
"""WCF's WS-RM extension namespace (``netrm:BufferRemaining``, ``netrm:ConnectionLimitReached``)."""

WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
"""The anonymous address: reply on the connection the request came in on."""

WSA_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/fault"
"""Action of WS-Addressing faults."""

WSA_SOAP_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
"""Action of SOAP-defined faults, and of WS-RM February 2005 faults as WCF sends them."""


class RMVersion(StrEnum):
    """A WS-ReliableMessaging version; the value is its XML namespace."""

    WSRM_2005_02 = "http://schemas.xmlsoap.org/ws/2005/02/rm"
    WSRM_1_1 = "http://docs.oasis-open.org/ws-rx/wsrm/200702"

    @property
    def label(self) -> str:
        """The version's name for messages, e.g. ``WS-RM 1.1``."""
        return "WS-RM 1.1" if self is RMVersion.WSRM_1_1 else "WS-RM February 2005"


class RMAction(StrEnum):
    """A WS-RM protocol action; the value is the last segment of its action URI."""

    CREATE_SEQUENCE = "CreateSequence"
    CREATE_SEQUENCE_RESPONSE = "CreateSequenceResponse"
    CLOSE_SEQUENCE = "CloseSequence"
    CLOSE_SEQUENCE_RESPONSE = "CloseSequenceResponse"
    TERMINATE_SEQUENCE = "TerminateSequence"
    TERMINATE_SEQUENCE_RESPONSE = "TerminateSequenceResponse"
    SEQUENCE_ACKNOWLEDGEMENT = "SequenceAcknowledgement"
    ACK_REQUESTED = "AckRequested"
    LAST_MESSAGE = "LastMessage"
    FAULT = "fault"


_ONLY_IN: dict[RMAction, RMVersion] = {
    RMAction.CLOSE_SEQUENCE: RMVersion.WSRM_1_1,
    RMAction.CLOSE_SEQUENCE_RESPONSE: RMVersion.WSRM_1_1,
    RMAction.TERMINATE_SEQUENCE_RESPONSE: RMVersion.WSRM_1_1,
    RMAction.FAULT: RMVersion.WSRM_1_1,
    RMAction.LAST_MESSAGE: RMVersion.WSRM_2005_02,
}


def exists_in(action: RMAction, version: RMVersion) -> bool:
    """Whether ``version`` has ``action`` (1.1 added Close and responses, dropped LastMessage)."""
    return _ONLY_IN.get(action, version) is version


def action_uri(action: RMAction, version: RMVersion) -> str:
    """The ``wsa:Action`` URI of ``action`` in ``version``."""
    if not exists_in(action, version):
        raise ConfigurationError(f"{version.label} has no {action.value} action")
    return f"{version.value}/{action.value}"


def parse_action(uri: str) -> tuple[RMVersion, RMAction] | None:
    """The version and protocol action an action URI names, or None for any other action."""
    namespace, _, name = uri.rpartition("/")
    try:
        version, action = RMVersion(namespace), RMAction(name)
    except ValueError:
        return None
    return (version, action) if exists_in(action, version) else None


class IncompleteSequenceBehavior(StrEnum):
    """What the destination does with a sequence that ends with gaps (WS-RM 1.1 only)."""

    DISCARD_ENTIRE_SEQUENCE = "DiscardEntireSequence"
    DISCARD_FOLLOWING_FIRST_GAP = "DiscardFollowingFirstGap"
    NO_DISCARD = "NoDiscard"


def _check_address(name: str, address: str) -> None:
    if not is_absolute_uri(address):
        raise ConfigurationError(f"{name} must be an absolute URI, not {address!r}")


def _check_duration(expires: str | None) -> None:
    if expires is not None and not is_duration(expires):
        raise ConfigurationError(f"Expires must be an xs:duration such as 'PT10M', not {expires!r}")


def _check_number(name: str, number: int) -> None:
    if not 1 <= number <= MAX_MESSAGE_NUMBER:
        raise ConfigurationError(f"{name} must be between 1 and {MAX_MESSAGE_NUMBER}, not {number}")


@dataclass(frozen=True, slots=True)
class EndpointReference:
    """A WS-Addressing endpoint reference (only its address is kept)."""

    address: str

    def __post_init__(self) -> None:
        _check_address("an endpoint reference address", self.address)


@dataclass(frozen=True, slots=True)
class Offer:
    """A sequence the RM source offers for the reverse direction (replies, duplex callbacks).

    ``endpoint`` is required in WS-RM 1.1 and does not exist in February 2005; so does
    ``incomplete_sequence_behavior``.
    """

    identifier: str
    endpoint: EndpointReference | None = None
    expires: str | None = None
    incomplete_sequence_behavior: IncompleteSequenceBehavior | None = None

    def __post_init__(self) -> None:
        _check_duration(self.expires)


@dataclass(frozen=True, slots=True)
class CreateSequence:
    """Request to create a sequence; acknowledgements go to ``acks_to``."""

    acks_to: EndpointReference
    expires: str | None = None
    offer: Offer | None = None

    def __post_init__(self) -> None:
        _check_duration(self.expires)


@dataclass(frozen=True, slots=True)
class Accept:
    """The destination accepts the offered sequence; its acknowledgements go to ``acks_to``."""

    acks_to: EndpointReference


@dataclass(frozen=True, slots=True)
class CreateSequenceResponse:
    """The destination created sequence ``identifier``."""

    identifier: str
    expires: str | None = None
    incomplete_sequence_behavior: IncompleteSequenceBehavior | None = None
    accept: Accept | None = None

    def __post_init__(self) -> None:
        _check_duration(self.expires)


@dataclass(frozen=True, slots=True)
class CloseSequence:
    """The source sends no more messages; ``last_msg_number`` is the last one sent (1.1 only)."""

    identifier: str
    last_msg_number: int | None = None

    def __post_init__(self) -> None:
        if self.last_msg_number is not None:
            _check_number("LastMsgNumber", self.last_msg_number)


@dataclass(frozen=True, slots=True)
class CloseSequenceResponse:
    """The destination closed the sequence (1.1 only)."""

    identifier: str


@dataclass(frozen=True, slots=True)
class TerminateSequence:
    """The source ends the sequence; ``last_msg_number`` exists in 1.1 only."""

    identifier: str
    last_msg_number: int | None = None

    def __post_init__(self) -> None:
        if self.last_msg_number is not None:
            _check_number("LastMsgNumber", self.last_msg_number)


@dataclass(frozen=True, slots=True)
class TerminateSequenceResponse:
    """The destination ended the sequence (1.1 only)."""

    identifier: str


@dataclass(frozen=True, slots=True)
class Sequence:
    """The ``wsrm:Sequence`` header: this message's number in sequence ``identifier``.

    ``last_message`` marks the last message of a February 2005 sequence (1.1 uses CloseSequence).
    """

    identifier: str
    message_number: int
    last_message: bool = False

    def __post_init__(self) -> None:
        _check_number("MessageNumber", self.message_number)


@dataclass(frozen=True, slots=True)
class AckRequested:
    """The ``wsrm:AckRequested`` header: please acknowledge sequence ``identifier`` now."""

    identifier: str


@dataclass(frozen=True, slots=True)
class AckRange:
    """Messages ``lower`` to ``upper`` (inclusive) were received."""

    lower: int
    upper: int

    def __post_init__(self) -> None:
        _check_number("AcknowledgementRange Lower", self.lower)
        _check_number("AcknowledgementRange Upper", self.upper)
        if self.lower > self.upper:
            raise ConfigurationError(f"AcknowledgementRange {self.lower}-{self.upper} is reversed")


@dataclass(frozen=True, slots=True)
class SequenceAcknowledgement:
    """The ``wsrm:SequenceAcknowledgement`` header.

    Either ``ranges`` (received messages) or ``nacks`` (missing messages) is given; neither means
    nothing was received yet (1.1 ``wsrm:None``, February 2005 WCF's range 0-0). ``final`` (1.1)
    says the ranges will not change; ``buffer_remaining`` is WCF's flow-control extension.
    """

    identifier: str
    ranges: tuple[AckRange, ...] = ()
    nacks: tuple[int, ...] = ()
    final: bool = False
    buffer_remaining: int | None = None

    def __post_init__(self) -> None:
        if self.ranges and self.nacks:
            raise ConfigurationError("an acknowledgement holds ranges or nacks, not both")
        for nack in self.nacks:
            _check_number("Nack", nack)
        if self.final and self.nacks:
            raise ConfigurationError("a Final acknowledgement cannot carry nacks")
        if self.buffer_remaining is not None and not 0 <= self.buffer_remaining < 2**31:
            raise ConfigurationError(f"BufferRemaining {self.buffer_remaining} is out of range")


class FaultCode(StrEnum):
    """SOAP 1.2 fault codes (SOAP 1.1's Client and Server read as Sender and Receiver)."""

    SENDER = "Sender"
    RECEIVER = "Receiver"
    MUST_UNDERSTAND = "MustUnderstand"
    VERSION_MISMATCH = "VersionMismatch"
    DATA_ENCODING_UNKNOWN = "DataEncodingUnknown"


class RMFaultCode(StrEnum):
    """WS-RM fault subcodes, in the namespace of the RM version in use."""

    SEQUENCE_TERMINATED = "SequenceTerminated"
    UNKNOWN_SEQUENCE = "UnknownSequence"
    INVALID_ACKNOWLEDGEMENT = "InvalidAcknowledgement"
    MESSAGE_NUMBER_ROLLOVER = "MessageNumberRollover"
    CREATE_SEQUENCE_REFUSED = "CreateSequenceRefused"
    SEQUENCE_CLOSED = "SequenceClosed"
    WSRM_REQUIRED = "WSRMRequired"
    LAST_MESSAGE_NUMBER_EXCEEDED = "LastMessageNumberExceeded"


class NetRMFaultCode(StrEnum):
    """WCF's fault subcodes in the ``netrm`` namespace."""

    CONNECTION_LIMIT_REACHED = "ConnectionLimitReached"


class AddressingFaultCode(StrEnum):
    """WS-Addressing fault subcodes (SOAP binding, section 6)."""

    INVALID_ADDRESSING_HEADER = "InvalidAddressingHeader"
    INVALID_ADDRESS = "InvalidAddress"
    INVALID_CARDINALITY = "InvalidCardinality"
    MISSING_ADDRESS_IN_EPR = "MissingAddressInEPR"
    ACTION_MISMATCH = "ActionMismatch"
    MESSAGE_ADDRESSING_HEADER_REQUIRED = "MessageAddressingHeaderRequired"
    ACTION_NOT_SUPPORTED = "ActionNotSupported"
    DESTINATION_UNREACHABLE = "DestinationUnreachable"
    ENDPOINT_UNAVAILABLE = "EndpointUnavailable"


@dataclass(frozen=True, slots=True)
class QName:
    """A qualified name outside the namespaces this package knows (a foreign fault subcode)."""

    namespace: str
    local: str


Subcode: TypeAlias = RMFaultCode | NetRMFaultCode | AddressingFaultCode | QName


@dataclass(frozen=True, slots=True)
class Fault:
    """A SOAP fault: code, nested subcodes (outermost first), reason text and WS-RM detail.

    ``identifier`` is the sequence a WS-RM fault is about; ``acknowledgement`` is the offending
    acknowledgement of an InvalidAcknowledgement fault. :mod:`durable_sessions.wsrm.faults`
    builds the standard faults with WCF's reason texts.
    """

    code: FaultCode
    reason: str
    subcodes: tuple[Subcode, ...] = ()
    identifier: str | None = None
    acknowledgement: SequenceAcknowledgement | None = None

    def __post_init__(self) -> None:
        if self.acknowledgement is not None and self.identifier != self.acknowledgement.identifier:
            raise ConfigurationError(
                "a fault's identifier must be its acknowledgement's identifier"
            )

    @property
    def rm_code(self) -> RMFaultCode | None:
        """The WS-RM subcode, when this is a WS-RM fault."""
        first = self.subcodes[0] if self.subcodes else None
        return first if isinstance(first, RMFaultCode) else None


@dataclass(frozen=True, slots=True)
class Payload:
    """An application body, kept opaque: its child elements as UTF-8 XML.

    The codec keeps it in canonical form (C14N of each element with the non-envelope namespaces
    in scope), so equal bodies compare equal; build one with ``codec.make_payload``.
    """

    xml: bytes


RMBody: TypeAlias = (
    CreateSequence
    | CreateSequenceResponse
    | CloseSequence
    | CloseSequenceResponse
    | TerminateSequence
    | TerminateSequenceResponse
)
"""The WS-RM messages that travel in the SOAP body."""

Body: TypeAlias = RMBody | Fault | Payload | None

_BODY_ACTIONS: dict[type[RMBody], RMAction] = {
    CreateSequence: RMAction.CREATE_SEQUENCE,
    CreateSequenceResponse: RMAction.CREATE_SEQUENCE_RESPONSE,
    CloseSequence: RMAction.CLOSE_SEQUENCE,
    CloseSequenceResponse: RMAction.CLOSE_SEQUENCE_RESPONSE,
    TerminateSequence: RMAction.TERMINATE_SEQUENCE,
    TerminateSequenceResponse: RMAction.TERMINATE_SEQUENCE_RESPONSE,
}


def body_action(body: RMBody) -> RMAction:
    """The protocol action of an RM body message."""
    return _BODY_ACTIONS[type(body)]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A SOAP envelope: WS-Addressing headers, WS-RM headers and a body.

    ``body`` is an RM message, a :class:`Fault`, an application :class:`Payload` or None (empty).
    """

    action: str
    body: Body = None
    to: str | None = None
    message_id: str | None = None
    relates_to: str | None = None
    reply_to: EndpointReference | None = None
    fault_to: EndpointReference | None = None
    sequence: Sequence | None = None
    ack_requested: tuple[AckRequested, ...] = ()
    acknowledgements: tuple[SequenceAcknowledgement, ...] = ()

    def __post_init__(self) -> None:
        if self.to is not None:
            _check_address("To", self.to)


def rm_envelope(
    body: RMBody,
    version: RMVersion,
    *,
    to: str | None = None,
    message_id: str | None = None,
    relates_to: str | None = None,
    reply_to: EndpointReference | None = None,
    acknowledgements: tuple[SequenceAcknowledgement, ...] = (),
) -> Envelope:
    """An envelope carrying ``body`` with the action ``version`` gives it."""
    return Envelope(
        action=action_uri(body_action(body), version),
        body=body,
        to=to,
        message_id=message_id,
        relates_to=relates_to,
        reply_to=reply_to,
        acknowledgements=acknowledgements,
    )


def reply_address(request: Envelope, *, fault: bool = False) -> str:
    """Where a reply to ``request`` goes: FaultTo (for faults), else ReplyTo, else anonymous."""
    target = request.reply_to
    if fault and request.fault_to is not None:
        target = request.fault_to
    return target.address if target is not None else WSA_ANONYMOUS
