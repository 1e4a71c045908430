"""Write envelopes as SOAP 1.2 + WS-Addressing 1.0 + WS-RM (February 2005 or 1.1)."""

from __future__ import annotations

from lxml import etree

from durable_sessions.wsrm.errors import EncodeError, EnvelopeRejected
from durable_sessions.wsrm.lexical import is_any_uri
from durable_sessions.wsrm.messages import (
    MAX_MESSAGE_NUMBER,
    NETRM_NAMESPACE,
    AckRequested,
    AddressingFaultCode,
    CloseSequence,
    CloseSequenceResponse,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    Fault,
    NetRMFaultCode,
    Offer,
    Payload,
    QName,
    RMFaultCode,
    RMVersion,
    Sequence,
    SequenceAcknowledgement,
    Subcode,
    TerminateSequence,
    TerminateSequenceResponse,
    body_action,
    exists_in,
)
from durable_sessions.wsrm.xml.documents import (
    DEFAULT_LIMITS,
    SOAP12,
    WSA10,
    XML_NS,
    payload_elements,
)

_PREFIXES = {SOAP12: "s", WSA10: "a", NETRM_NAMESPACE: "netrm"}
_PAYLOAD = "payload"
_V11 = RMVersion.WSRM_1_1
_V2005 = RMVersion.WSRM_2005_02
_FAULT_CODES_ONLY_IN = {
    RMFaultCode.SEQUENCE_CLOSED: _V11,
    RMFaultCode.WSRM_REQUIRED: _V11,
    RMFaultCode.LAST_MESSAGE_NUMBER_EXCEEDED: _V2005,
}


def _require(condition: bool, version: RMVersion, what: str) -> None:
    if not condition:
        raise EncodeError(f"{version.label} cannot express {what}")


def _uri(value: str, what: str) -> str:
    if not is_any_uri(value):
        raise EncodeError(f"{what} must be a URI, not {value!r}")
    return value


class _Writer:
    def __init__(self, version: RMVersion) -> None:
        self.version = version
        self.rm = version.value

    def element(
        self, parent: etree._Element, namespace: str, name: str, text: str | None = None
    ) -> etree._Element:
        child = etree.SubElement(parent, f"{{{namespace}}}{name}")
        if text is not None:
            child.text = text
        return child

    def rm_element(
        self, parent: etree._Element, name: str, text: str | None = None
    ) -> etree._Element:
        return self.element(parent, self.rm, name, text)

    def identifier(self, parent: etree._Element, value: str) -> etree._Element:
        return self.rm_element(parent, "Identifier", _uri(value, "Identifier"))

    def header(
        self,
        parent: etree._Element,
        namespace: str,
        name: str,
        text: str | None = None,
        *,
        must_understand: bool = False,
    ) -> etree._Element:
        child = self.element(parent, namespace, name, text)
        if must_understand:
            child.set(f"{{{SOAP12}}}mustUnderstand", "1")
        return child

    def epr(
        self, parent: etree._Element, namespace: str, name: str, epr: EndpointReference
    ) -> None:
        self.element(self.element(parent, namespace, name), WSA10, "Address", epr.address)

    def envelope(self, envelope: Envelope) -> etree._Element:
        root = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"s": SOAP12, "a": WSA10, "r": self.rm})
        header = self.element(root, SOAP12, "Header")
        action = _uri(envelope.action, "Action")
        self.header(header, WSA10, "Action", action, must_understand=True)
        if envelope.message_id is not None:
            self.header(header, WSA10, "MessageID", _uri(envelope.message_id, "MessageID"))
        if envelope.relates_to is not None:
            self.header(header, WSA10, "RelatesTo", _uri(envelope.relates_to, "RelatesTo"))
        if envelope.reply_to is not None:
            self.epr(header, WSA10, "ReplyTo", envelope.reply_to)
        if envelope.fault_to is not None:
            self.epr(header, WSA10, "FaultTo", envelope.fault_to)
        if envelope.to is not None:
            self.header(header, WSA10, "To", envelope.to, must_understand=True)
        if envelope.sequence is not None:
            self.sequence(header, envelope.sequence)
        for request in envelope.ack_requested:
            self.ack_requested(header, request)
        for ack in envelope.acknowledgements:
            self.acknowledgement(header, ack)
        self.body(self.element(root, SOAP12, "Body"), envelope)
        return root

    def sequence(self, header: etree._Element, sequence: Sequence) -> None:
        _require(not sequence.last_message or self.version is _V2005, self.version, "LastMessage")
        element = self.header(header, self.rm, "Sequence", must_understand=True)
        self.identifier(element, sequence.identifier)
        self.rm_element(element, "MessageNumber", str(sequence.message_number))
        if sequence.last_message:
            self.rm_element(element, "LastMessage")

    def ack_requested(self, header: etree._Element, request: AckRequested) -> None:
        self.identifier(self.rm_element(header, "AckRequested"), request.identifier)

    def acknowledgement(self, parent: etree._Element, ack: SequenceAcknowledgement) -> None:
        _require(not ack.final or self.version is _V11, self.version, "a Final acknowledgement")
        element = self.rm_element(parent, "SequenceAcknowledgement")
        self.identifier(element, ack.identifier)
        for nack in ack.nacks:
            self.rm_element(element, "Nack", str(nack))
        if not ack.nacks:
            if ack.ranges:
                for ack_range in ack.ranges:
                    self.ack_range(element, ack_range.lower, ack_range.upper)
            elif self.version is _V11:
                self.rm_element(element, "None")
            else:
                # February 2005 has no wsrm:None: WCF acknowledges "nothing yet" as 0-0 (B1402).
                self.ack_range(element, 0, 0)
        if ack.final:
            self.rm_element(element, "Final")
        if ack.buffer_remaining is not None:
            remaining = etree.SubElement(
                element, f"{{{NETRM_NAMESPACE}}}BufferRemaining", nsmap={"netrm": NETRM_NAMESPACE}
            )
            remaining.text = str(ack.buffer_remaining)

    def ack_range(self, parent: etree._Element, lower: int, upper: int) -> None:
        element = self.rm_element(parent, "AcknowledgementRange")
        element.set("Upper", str(upper))
        element.set("Lower", str(lower))

    def body(self, parent: etree._Element, envelope: Envelope) -> None:
        body = envelope.body
        if body is None:
            return
        if isinstance(body, Payload):
            try:
                payload_elements(body.xml, DEFAULT_LIMITS)  # well-formed body content only
            except EnvelopeRejected as error:
                raise EncodeError(f"the payload is not usable XML: {error}") from error
            # Spliced in as bytes by write(): moved in as elements, lxml would rename prefixes
            # bound to the envelope's namespaces and change the payload.
            parent.append(etree.Comment(_PAYLOAD))
        elif isinstance(body, Fault):
            self.fault(parent, body)
        else:
            action = body_action(body)
            _require(exists_in(action, self.version), self.version, action.value)
            self.rm_body(parent, body)

    def rm_body(
        self,
        parent: etree._Element,
        body: CreateSequence
        | CreateSequenceResponse
        | CloseSequence
        | CloseSequenceResponse
        | TerminateSequence
        | TerminateSequenceResponse,
    ) -> None:
        element = self.rm_element(parent, body_action(body).value)
        if isinstance(body, CreateSequence):
            self.epr(element, self.rm, "AcksTo", body.acks_to)
            if body.expires is not None:
                self.rm_element(element, "Expires", body.expires)
            if body.offer is not None:
                self.offer(element, body.offer)
            return
        self.identifier(element, body.identifier)
        if isinstance(body, CreateSequenceResponse):
            if body.expires is not None:
                self.rm_element(element, "Expires", body.expires)
            if body.incomplete_sequence_behavior is not None:
                _require(self.version is _V11, self.version, "IncompleteSequenceBehavior")
                self.rm_element(
                    element, "IncompleteSequenceBehavior", body.incomplete_sequence_behavior
                )
            if body.accept is not None:
                self.epr(self.rm_element(element, "Accept"), self.rm, "AcksTo", body.accept.acks_to)
        elif (
            isinstance(body, CloseSequence | TerminateSequence) and body.last_msg_number is not None
        ):
            _require(self.version is _V11, self.version, "LastMsgNumber")
            self.rm_element(element, "LastMsgNumber", str(body.last_msg_number))

    def offer(self, parent: etree._Element, offer: Offer) -> None:
        element = self.rm_element(parent, "Offer")
        self.identifier(element, offer.identifier)
        if self.version is _V11:
            _require(offer.endpoint is not None, self.version, "an Offer without an Endpoint")
        else:
            _require(offer.endpoint is None, self.version, "an Offer Endpoint")
            _require(
                offer.incomplete_sequence_behavior is None,
                self.version,
                "IncompleteSequenceBehavior",
            )
        if offer.endpoint is not None:
            self.epr(element, self.rm, "Endpoint", offer.endpoint)
        if offer.expires is not None:
            self.rm_element(element, "Expires", offer.expires)
        if offer.incomplete_sequence_behavior is not None:
            self.rm_element(
                element, "IncompleteSequenceBehavior", offer.incomplete_sequence_behavior
            )

    def fault(self, parent: etree._Element, fault: Fault) -> None:
        element = self.element(parent, SOAP12, "Fault")
        code = self.element(element, SOAP12, "Code")
        self.element(code, SOAP12, "Value", f"s:{fault.code.value}")
        for subcode in fault.subcodes:
            code = self.element(code, SOAP12, "Subcode")
            self.qname_value(code, subcode)
        reason = self.element(self.element(element, SOAP12, "Reason"), SOAP12, "Text", fault.reason)
        reason.set(f"{{{XML_NS}}}lang", "en")
        if fault.identifier is None and fault.acknowledgement is None:
            return
        detail = self.element(element, SOAP12, "Detail")
        if fault.acknowledgement is not None:
            self.acknowledgement(detail, fault.acknowledgement)
        elif fault.identifier is not None:
            self.identifier(detail, fault.identifier)
            if fault.rm_code is RMFaultCode.MESSAGE_NUMBER_ROLLOVER and self.version is _V11:
                self.rm_element(detail, "MaxMessageNumber", str(MAX_MESSAGE_NUMBER))

    def qname_value(self, parent: etree._Element, subcode: Subcode) -> None:
        if isinstance(subcode, RMFaultCode):
            only_in = _FAULT_CODES_ONLY_IN.get(subcode, self.version)
            _require(only_in is self.version, self.version, f"a {subcode.value} fault")
            namespace, local = self.rm, subcode.value
        elif isinstance(subcode, NetRMFaultCode):
            namespace, local = NETRM_NAMESPACE, subcode.value
        elif isinstance(subcode, AddressingFaultCode):
            namespace, local = WSA10, subcode.value
        else:
            assert isinstance(subcode, QName)
            namespace, local = subcode.namespace, subcode.local
        if not namespace:
            self.element(parent, SOAP12, "Value", local)
            return
        prefix = {**_PREFIXES, self.rm: "r"}.get(namespace, "q")
        nsmap = {} if namespace in (SOAP12, WSA10, self.rm) else {prefix: namespace}
        value = etree.SubElement(parent, f"{{{SOAP12}}}Value", nsmap=nsmap)
        value.text = f"{prefix}:{local}"


def write(envelope: Envelope, version: RMVersion) -> bytes:
    """Serialize ``envelope`` in ``version``; raise EncodeError when it cannot be expressed."""
    try:
        root = _Writer(version).envelope(envelope)
        document = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    except EncodeError:
        raise
    except ValueError as error:  # lxml refuses text XML cannot carry (NUL, control chars)
        raise EncodeError(f"the envelope holds text XML cannot carry: {error}") from error
    if isinstance(envelope.body, Payload):
        # Header text cannot contain a comment, so this is the one we put in the body.
        placeholder = f"<s:Body><!--{_PAYLOAD}--></s:Body>".encode()
        document = document.replace(placeholder, b"<s:Body>" + envelope.body.xml + b"</s:Body>")
    return document
