"""Read SOAP 1.1/1.2 envelopes with WS-Addressing 1.0/2004-08 and WS-RM February 2005/1.1.

Structure is checked as strictly as the schemas (element order, cardinality, numbers in range);
whitespace is collapsed where the schema types collapse it. Every refusal is an
:class:`~durable_sessions.wsrm.errors.EnvelopeRejected` carrying the fault to send back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lxml import etree

from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import (
    NETRM_NAMESPACE,
    AddressingFaultCode,
    Body,
    EndpointReference,
    Envelope,
    Fault,
    FaultCode,
    NetRMFaultCode,
    Payload,
    QName,
    RMAction,
    RMBody,
    RMFaultCode,
    RMVersion,
    SequenceAcknowledgement,
    Subcode,
    action_uri,
    body_action,
    parse_action,
)
from durable_sessions.wsrm.xml import decode_rm as rm
from durable_sessions.wsrm.xml.decode_rm import Fields, Invalid, fail, invalid_header, text
from durable_sessions.wsrm.xml.documents import (
    SOAP11,
    SOAP12,
    WSA10,
    WSA200408,
    WSMC,
    XML_NS,
    AddressingVersion,
    SoapVersion,
    canonical,
    collapse,
    elements,
    local_name,
)

_ROLES = {
    SOAP12: (
        "role",
        {
            "http://www.w3.org/2003/05/soap-envelope/role/next",
            "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver",
        },
    ),
    SOAP11: ("actor", {"http://schemas.xmlsoap.org/soap/actor/next"}),
}
_SOAP11_CODES = {
    "Client": FaultCode.SENDER,
    "Server": FaultCode.RECEIVER,
    "MustUnderstand": FaultCode.MUST_UNDERSTAND,
    "VersionMismatch": FaultCode.VERSION_MISMATCH,
}
_ADDRESSING_HEADERS = ("Action", "To", "MessageID", "RelatesTo", "ReplyTo", "FaultTo", "From")
_RM_HEADERS = ("Sequence", "AckRequested", "SequenceAcknowledgement", "SequenceFault")
_HEADER_ACTIONS = (RMAction.SEQUENCE_ACKNOWLEDGEMENT, RMAction.ACK_REQUESTED, RMAction.LAST_MESSAGE)
_RM_NAMESPACES = frozenset(v.value for v in RMVersion)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A decoded envelope with the versions it was written in."""

    envelope: Envelope
    rm_version: RMVersion | None
    soap_version: SoapVersion
    addressing_version: AddressingVersion


class _Reader:
    def __init__(self, root: etree._Element) -> None:
        self.root = root
        self.soap = ""
        self.wsa: str | None = None
        self.rm_version: RMVersion | None = None
        self.message_id: str | None = None

    def is_rm(self, namespace: str) -> bool:
        """Whether ``namespace`` is WS-RM's; the first one seen fixes the message's version."""
        if namespace not in _RM_NAMESPACES:
            return False
        version = RMVersion(namespace)
        if self.rm_version is not None and version is not self.rm_version:
            raise fail("The message mixes WS-ReliableMessaging versions.")
        self.rm_version = version
        return True

    @property
    def version(self) -> RMVersion:
        """The WS-RM version, once an RM element has been seen."""
        assert self.rm_version is not None
        return self.rm_version

    # -- envelope -------------------------------------------------------------------------

    def envelope(self) -> Inbound:
        namespace, name = local_name(self.root)
        if name != "Envelope":
            raise fail(f"The message is not a SOAP envelope (its root is {name}).")
        if namespace not in (SOAP11, SOAP12):
            raise Invalid(Fault(FaultCode.VERSION_MISMATCH, "Unknown SOAP envelope namespace."))
        self.soap = namespace
        parts = elements(self.root)
        names = [local_name(p) for p in parts]
        if names not in ([(namespace, "Body")], [(namespace, "Header"), (namespace, "Body")]):
            raise fail("A SOAP envelope holds an optional Header and then a Body.")
        headers = self.headers(parts[0]) if len(parts) == 2 else {}
        body = self.body(parts[-1], headers)
        envelope = self.assemble(headers, body)
        assert self.wsa is not None
        return Inbound(
            envelope, self.rm_version, SoapVersion(self.soap), AddressingVersion(self.wsa)
        )

    def headers(self, header: etree._Element) -> dict[str, list[etree._Element]]:
        found: dict[str, list[etree._Element]] = {}
        role_attribute, roles = _ROLES[self.soap]
        for element in elements(header):
            role = element.get(f"{{{self.soap}}}{role_attribute}")
            if role is not None and collapse(role) not in roles:
                continue  # targeted at another SOAP node
            namespace, name = local_name(element)
            if namespace in (WSA10, WSA200408) and name in _ADDRESSING_HEADERS:
                if self.wsa not in (None, namespace):
                    raise invalid_header(
                        "The message mixes WS-Addressing versions.",
                        AddressingFaultCode.INVALID_CARDINALITY,
                    )
                self.wsa = namespace
            elif not (self.is_rm(namespace) and name in _RM_HEADERS):
                if collapse(element.get(f"{{{self.soap}}}mustUnderstand")) in ("1", "true"):
                    reason = f"The header {{{namespace}}}{name} was not understood."
                    raise Invalid(Fault(FaultCode.MUST_UNDERSTAND, reason))
                continue
            found.setdefault(name, []).append(element)
        for name in ("Action", "To", "MessageID", "ReplyTo", "FaultTo", "From", "Sequence"):
            if len(found.get(name, ())) > 1:
                raise invalid_header(
                    f"The message has more than one {name} header.",
                    AddressingFaultCode.INVALID_CARDINALITY,
                )
        if "MessageID" in found:
            self.message_id = _addressing_uri(found["MessageID"][0])
        return found

    def assemble(self, headers: dict[str, list[etree._Element]], body: Body) -> Envelope:
        if "Action" not in headers:
            raise fail(
                "A required header representing a Message Addressing Property is not "
                "present: Action.",
                AddressingFaultCode.MESSAGE_ADDRESSING_HEADER_REQUIRED,
            )

        def epr(name: str) -> EndpointReference | None:
            return rm.epr(headers[name][0]) if name in headers else None

        def each(name: str) -> list[etree._Element]:
            return headers.get(name, [])

        relates_to = each("RelatesTo")
        envelope = Envelope(
            action=_addressing_uri(headers["Action"][0]),
            body=body,
            message_id=self.message_id,
            relates_to=_addressing_uri(relates_to[0]) if relates_to else None,
            reply_to=epr("ReplyTo"),
            fault_to=epr("FaultTo"),
            sequence=rm.sequence(each("Sequence")[0], self.version)
            if "Sequence" in headers
            else None,
            ack_requested=tuple(rm.ack_requested(e, self.version) for e in each("AckRequested")),
            acknowledgements=tuple(
                rm.acknowledgement(e, self.version) for e in each("SequenceAcknowledgement")
            ),
        )
        self.check_action(envelope)
        if "To" not in headers:
            return envelope
        # Checked last, so that a broken protocol element is what a refusal names first.
        return replace(envelope, to=rm.address(text(headers["To"][0]), "To"))

    def check_action(self, envelope: Envelope) -> None:
        body, action = envelope.body, envelope.action
        named = parse_action(action)
        if isinstance(body, Fault) or named is None:
            if isinstance(body, RMBody):
                raise _mismatch(action, body_action(body).value)
            return
        version, kind = named
        if self.rm_version is not None and version is not self.rm_version:
            raise _mismatch(action, f"its {self.rm_version.label} elements")
        if isinstance(body, RMBody):
            if action != action_uri(body_action(body), version):
                raise _mismatch(action, body_action(body).value)
            return
        if isinstance(body, Payload) or kind not in _HEADER_ACTIONS:
            raise _mismatch(action, "the message body")
        present = {
            RMAction.SEQUENCE_ACKNOWLEDGEMENT: bool(envelope.acknowledgements),
            RMAction.ACK_REQUESTED: bool(envelope.ack_requested),
            RMAction.LAST_MESSAGE: envelope.sequence is not None and envelope.sequence.last_message,
        }
        if not present[kind]:
            raise fail(f"A {kind.value} message must carry its {kind.value} header.")

    def body(self, body: etree._Element, headers: dict[str, list[etree._Element]]) -> Body:
        children = elements(body)
        if collapse(body.text) or any(collapse(child.tail) for child in children):
            raise fail("A SOAP body holds elements, not text.")
        if not children:
            return None
        first = children[0]
        namespace, name = local_name(first)
        fault = (namespace, name) == (self.soap, "Fault")
        if (fault or self.is_rm(namespace) or namespace == WSMC) and len(children) > 1:
            raise fail(f"A {name} body cannot share the body with other elements.")
        if fault:
            return self.fault(first) if self.soap == SOAP12 else self.fault11(first, headers)
        if namespace == WSMC:
            raise fail(
                "WS-MakeConnection is not supported.", AddressingFaultCode.ACTION_NOT_SUPPORTED
            )
        if namespace in _RM_NAMESPACES:
            return rm.rm_body(first, self.version)
        return Payload(canonical(children))

    # -- faults ---------------------------------------------------------------------------

    def qname(self, element: etree._Element) -> tuple[str, str]:
        value = text(element)
        prefix, _, local = value.rpartition(":")
        if not local or " " in value:
            raise fail(f"{value!r} is not a qualified name.")
        namespace = element.nsmap.get(prefix or None)
        if namespace is None and prefix:
            raise fail(f"The fault code prefix {prefix!r} is not declared.")
        return namespace or "", local

    def subcode(self, namespace: str, local: str) -> Subcode:
        enum: type[RMFaultCode] | type[NetRMFaultCode] | type[AddressingFaultCode] | None = None
        if self.is_rm(namespace):
            enum = RMFaultCode
        elif namespace == NETRM_NAMESPACE:
            enum = NetRMFaultCode
        elif namespace in (WSA10, WSA200408):
            enum = AddressingFaultCode
        if enum is not None and local in set(enum):
            return enum(local)
        return QName(namespace, local)

    def fault(self, element: etree._Element) -> Fault:
        fields = Fields(element, SOAP12)
        code, reason = fields.required("Code"), fields.required("Reason")
        fields.optional("Node")
        fields.optional("Role")
        detail = fields.optional("Detail")
        fields.end()
        code_fields = Fields(code, SOAP12)
        namespace, local = self.qname(code_fields.required("Value"))
        if namespace != SOAP12 or local not in set(FaultCode):
            raise fail(f"{local!r} is not a SOAP 1.2 fault code.")
        subcodes: list[Subcode] = []
        level = code_fields.optional("Subcode")
        while level is not None:
            level_fields = Fields(level, SOAP12)
            subcodes.append(self.subcode(*self.qname(level_fields.required("Value"))))
            level = level_fields.optional("Subcode")
            level_fields.end()
        code_fields.end()
        texts = Fields(reason, SOAP12).repeated("Text")
        if not texts:
            raise fail("A fault Reason needs a Text.")
        english = [t for t in texts if (t.get(f"{{{XML_NS}}}lang") or "").startswith("en")]
        return self.with_detail(FaultCode(local), (english or texts)[0].text, subcodes, detail)

    def fault11(self, element: etree._Element, headers: dict[str, list[etree._Element]]) -> Fault:
        children = {local_name(c)[1]: c for c in elements(element) if not local_name(c)[0]}
        if "faultcode" not in children or "faultstring" not in children:
            raise fail("A SOAP 1.1 fault needs faultcode and faultstring.")
        namespace, local = self.qname(children["faultcode"])
        subcodes: list[Subcode] = []
        if namespace == SOAP11 and local in _SOAP11_CODES:
            code = _SOAP11_CODES[local]
        else:  # e.g. wsrm:WSRMRequired: SOAP 1.1 has no subcodes
            code = FaultCode.SENDER
            subcodes.append(self.subcode(namespace, local))
        detail = children.get("detail")
        for header in headers.get("SequenceFault", ()):
            # WS-RM over SOAP 1.1 carries its subcode and detail in a SequenceFault header.
            header_fields = Fields(header, self.version.value)
            subcodes.append(self.subcode(*self.qname(header_fields.required("FaultCode"))))
            inner = header_fields.optional("Detail")  # 1.1 nests it, February 2005 does not
            detail = header if inner is None else inner
        return self.with_detail(code, children["faultstring"].text, subcodes, detail)

    def with_detail(
        self,
        code: FaultCode,
        reason: str | None,
        subcodes: list[Subcode],
        detail: etree._Element | None,
    ) -> Fault:
        identifier: str | None = None
        acknowledgement: SequenceAcknowledgement | None = None
        for child in elements(detail) if detail is not None else ():
            namespace, name = local_name(child)
            if not self.is_rm(namespace):
                continue
            if name == "Identifier" and identifier is None:
                identifier = rm.uri(child, "Identifier")
            elif name == "SequenceAcknowledgement" and acknowledgement is None:
                acknowledgement = rm.acknowledgement(child, self.version)
                identifier = acknowledgement.identifier
        return Fault(
            code, (reason or "").strip(" \t\n\r"), tuple(subcodes), identifier, acknowledgement
        )


def _addressing_uri(element: etree._Element) -> str:
    what = local_name(element)[1]
    return rm.uri(element, what, AddressingFaultCode.INVALID_ADDRESSING_HEADER)


def _mismatch(action: str, what: str) -> Invalid:
    return invalid_header(
        f"The action {action!r} does not match {what}.", AddressingFaultCode.ACTION_MISMATCH
    )


def read(root: etree._Element) -> Inbound:
    """Decode a parsed envelope."""
    reader = _Reader(root)
    try:
        return reader.envelope()
    except Invalid as invalid:
        raise EnvelopeRejected(
            invalid.fault, rm_version=reader.rm_version, message_id=reader.message_id
        ) from None
