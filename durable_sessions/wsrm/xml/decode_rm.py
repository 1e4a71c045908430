"""Read WS-RM elements and endpoint references: the building blocks of the envelope reader.

Each reader checks its element as strictly as the schema does (order, cardinality, ranges) and
raises :class:`Invalid` with the fault to send back.
"""

from __future__ import annotations

import re

from lxml import etree

from durable_sessions.wsrm.faults import message_number_rollover
from durable_sessions.wsrm.lexical import is_absolute_uri, is_any_uri, is_duration
from durable_sessions.wsrm.messages import (
    MAX_MESSAGE_NUMBER,
    NETRM_NAMESPACE,
    WSA_ANONYMOUS,
    Accept,
    AckRange,
    AckRequested,
    AddressingFaultCode,
    CloseSequence,
    CloseSequenceResponse,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Fault,
    IncompleteSequenceBehavior,
    Offer,
    RMBody,
    RMVersion,
    Sequence,
    SequenceAcknowledgement,
    Subcode,
    TerminateSequence,
    TerminateSequenceResponse,
)
from durable_sessions.wsrm.xml.documents import (
    WSA10,
    WSA200408,
    WSA200408_ANONYMOUS,
    collapse,
    elements,
    local_name,
    sender_fault,
)

_UNSIGNED = re.compile(r"\+?[0-9]+", re.ASCII)
V11 = RMVersion.WSRM_1_1
V2005 = RMVersion.WSRM_2005_02


class Invalid(Exception):  # a signal: the envelope reader turns it into EnvelopeRejected
    """The envelope cannot be accepted; ``fault`` says why."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault


def fail(reason: str, *subcodes: Subcode) -> Invalid:
    """A Sender fault to raise."""
    return Invalid(sender_fault(reason, *subcodes))


def invalid_header(reason: str, detail: AddressingFaultCode) -> Invalid:
    """An InvalidAddressingHeader fault with a more precise subcode."""
    return fail(reason, AddressingFaultCode.INVALID_ADDRESSING_HEADER, detail)


class Fields:
    """The children of an element in one namespace, consumed in schema order.

    Children in other namespaces are extensions (``xs:any ##other``) and are skipped.
    """

    def __init__(self, element: etree._Element, namespace: str) -> None:
        self.what = local_name(element)[1]
        self.items = [c for c in elements(element) if local_name(c)[0] == namespace]
        self.position = 0

    def optional(self, name: str) -> etree._Element | None:
        """The next child if it is ``name``."""
        if self.position < len(self.items) and local_name(self.items[self.position])[1] == name:
            self.position += 1
            return self.items[self.position - 1]
        return None

    def required(self, name: str) -> etree._Element:
        """The next child, which must be ``name``."""
        found = self.optional(name)
        if found is None:
            raise fail(f"{self.what} must contain {name} here.")
        return found

    def repeated(self, name: str) -> list[etree._Element]:
        """The next children named ``name`` (maybe none)."""
        found = []
        while (item := self.optional(name)) is not None:
            found.append(item)
        return found

    def end(self) -> None:
        """Refuse any child left over."""
        if self.position < len(self.items):
            unexpected = local_name(self.items[self.position])[1]
            raise fail(f"{self.what} does not allow {unexpected} here.")


def text(element: etree._Element) -> str:
    """An element's collapsed text; it may not contain elements."""
    if elements(element):
        raise fail(f"{local_name(element)[1]} must hold text, not elements.")
    return collapse(element.text)


def uri(element: etree._Element, what: str, *subcodes: Subcode) -> str:
    """An element's text, which must be an xs:anyURI."""
    value = text(element)
    if not is_any_uri(value):
        raise fail(f"{what} must be a URI, not {value!r}.", *subcodes)
    return value


def identifier_of(fields: Fields) -> str:
    """The wsrm:Identifier that comes next."""
    return uri(fields.required("Identifier"), "Identifier")


def unsigned(value: str | None, what: str) -> int:
    """An xs:unsignedLong-style number (leading + and zeros, surrounding spaces allowed)."""
    collapsed = collapse(value)
    if not _UNSIGNED.fullmatch(collapsed):
        raise fail(f"{what} must be a non-negative integer, not {collapsed!r}.")
    return int(collapsed)


def number(element: etree._Element, what: str) -> int:
    """A message number: 1 to 2^63-1."""
    value = unsigned(text(element), what)
    if not 1 <= value <= MAX_MESSAGE_NUMBER:
        raise fail(f"{what} must be between 1 and {MAX_MESSAGE_NUMBER}, not {value}.")
    return value


def address(value: str, what: str) -> str:
    """A WS-Addressing address, which must be an absolute URI."""
    if not is_absolute_uri(value):
        raise invalid_header(
            f"{what} must be an absolute URI, not {value!r}.", AddressingFaultCode.INVALID_ADDRESS
        )
    return value


def epr(element: etree._Element) -> EndpointReference:
    """An endpoint reference in either WS-Addressing version (2004/08 anonymous normalized)."""
    found = [
        c
        for c in elements(element)
        if local_name(c) in ((WSA10, "Address"), (WSA200408, "Address"))
    ]
    what = local_name(element)[1]
    if len(found) != 1:
        raise invalid_header(
            f"{what} must hold one wsa:Address.", AddressingFaultCode.MISSING_ADDRESS_IN_EPR
        )
    value = address(text(found[0]), what)
    return EndpointReference(WSA_ANONYMOUS if value == WSA200408_ANONYMOUS else value)


def sequence(element: etree._Element, version: RMVersion) -> Sequence:
    """The Sequence header (MessageNumber beyond 2^63-1 is a MessageNumberRollover fault)."""
    fields = Fields(element, version.value)
    identifier = identifier_of(fields)
    value = unsigned(text(fields.required("MessageNumber")), "MessageNumber")
    last = fields.optional("LastMessage") if version is V2005 else None
    fields.end()
    if last is not None and (elements(last) or collapse(last.text)):
        raise fail("LastMessage must be empty.")
    if value > MAX_MESSAGE_NUMBER:
        raise Invalid(message_number_rollover(identifier))
    if value == 0:
        raise fail("MessageNumber must be at least 1.")
    return Sequence(identifier, value, last_message=last is not None)


def ack_requested(element: etree._Element, version: RMVersion) -> AckRequested:
    """The AckRequested header."""
    fields = Fields(element, version.value)
    identifier = identifier_of(fields)
    if version is V2005:
        fields.optional("MaxMessageNumberUsed")  # informational; WCF ignores it too
    fields.end()
    return AckRequested(identifier)


def acknowledgement(element: etree._Element, version: RMVersion) -> SequenceAcknowledgement:
    """The SequenceAcknowledgement header, with WCF's BufferRemaining extension."""
    fields = Fields(element, version.value)
    identifier = identifier_of(fields)
    nacks = tuple(number(e, "Nack") for e in fields.repeated("Nack"))
    ranges: list[AckRange] = []
    final = False
    if not nacks:
        found = fields.repeated("AcknowledgementRange")
        if not found and version is V11:
            fields.required("None")
        elif not found:
            raise fail("SequenceAcknowledgement must contain AcknowledgementRange or Nack.")
        ranges = _ranges(found)
        final = version is V11 and fields.optional("Final") is not None
    fields.end()
    extension = (NETRM_NAMESPACE, "BufferRemaining")
    remaining = [e for e in elements(element) if local_name(e) == extension]
    buffer_remaining = unsigned(text(remaining[0]), "BufferRemaining") if remaining else None
    if buffer_remaining is not None and buffer_remaining >= 2**31:
        raise fail("BufferRemaining is out of range.")
    return SequenceAcknowledgement(identifier, tuple(ranges), nacks, final, buffer_remaining)


def _ranges(found: list[etree._Element]) -> list[AckRange]:
    pairs = [
        (
            unsigned(e.get("Lower"), "AcknowledgementRange Lower"),
            unsigned(e.get("Upper"), "AcknowledgementRange Upper"),
        )
        for e in found
    ]
    if pairs == [(0, 0)]:
        return []  # WCF's "nothing received yet" (rule B1402)
    for lower, upper in pairs:
        if not 1 <= lower <= upper <= MAX_MESSAGE_NUMBER:
            raise fail(f"AcknowledgementRange {lower}-{upper} is not a valid range.")
    return [AckRange(lower, upper) for lower, upper in pairs]


def rm_body(element: etree._Element, version: RMVersion) -> RMBody:
    """A WS-RM body message of ``version``."""
    name = local_name(element)[1]
    fields = Fields(element, version.value)
    v11 = version is V11
    result: RMBody
    if name == "CreateSequence":
        acks_to = epr(fields.required("AcksTo"))
        expires = _expires(fields.optional("Expires"))
        offer = fields.optional("Offer")
        result = CreateSequence(acks_to, expires, None if offer is None else _offer(offer, version))
    elif name == "CreateSequenceResponse":
        identifier = identifier_of(fields)
        expires = _expires(fields.optional("Expires"))
        behavior = _behavior(fields.optional("IncompleteSequenceBehavior") if v11 else None)
        accept = fields.optional("Accept")
        result = CreateSequenceResponse(
            identifier, expires, behavior, None if accept is None else _accept(accept, version)
        )
    elif name == "TerminateSequence" or (name == "CloseSequence" and v11):
        identifier = identifier_of(fields)
        last = fields.optional("LastMsgNumber") if v11 else None
        last_number = None if last is None else number(last, "LastMsgNumber")
        kind = CloseSequence if name == "CloseSequence" else TerminateSequence
        result = kind(identifier, last_number)
    elif name == "CloseSequenceResponse" and v11:
        result = CloseSequenceResponse(identifier_of(fields))
    elif name == "TerminateSequenceResponse" and v11:
        result = TerminateSequenceResponse(identifier_of(fields))
    else:
        raise fail(
            f"{name} is not a {version.label} body message.",
            AddressingFaultCode.ACTION_NOT_SUPPORTED,
        )
    fields.end()
    return result


def _offer(element: etree._Element, version: RMVersion) -> Offer:
    fields = Fields(element, version.value)
    identifier = identifier_of(fields)
    endpoint = epr(fields.required("Endpoint")) if version is V11 else None
    expires = _expires(fields.optional("Expires"))
    behavior = _behavior(fields.optional("IncompleteSequenceBehavior") if version is V11 else None)
    fields.end()
    return Offer(identifier, endpoint, expires, behavior)


def _accept(element: etree._Element, version: RMVersion) -> Accept:
    fields = Fields(element, version.value)
    acks_to = epr(fields.required("AcksTo"))
    fields.end()
    return Accept(acks_to)


def _expires(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    value = text(element)
    if not is_duration(value):
        raise fail(f"Expires must be an xs:duration, not {value!r}.")
    return value


def _behavior(element: etree._Element | None) -> IncompleteSequenceBehavior | None:
    if element is None:
        return None
    value = text(element)
    try:
        return IncompleteSequenceBehavior(value)
    except ValueError:
        raise fail(f"{value!r} is not an IncompleteSequenceBehavior.") from None
