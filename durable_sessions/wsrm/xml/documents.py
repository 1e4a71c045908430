"""XML plumbing shared by the codec: namespaces, hardened parsing, canonical payloads.

Every module of this package uses it; nothing outside the package imports lxml.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from durable_sessions.errors import ConfigurationError
from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import (
    NETRM_NAMESPACE,
    Fault,
    FaultCode,
    RMVersion,
    Subcode,
)


class SoapVersion(StrEnum):
    """A SOAP envelope version; the value is its namespace."""

    SOAP_1_1 = "http://schemas.xmlsoap.org/soap/envelope/"
    SOAP_1_2 = "http://www.w3.org/2003/05/soap-envelope"


class AddressingVersion(StrEnum):
    """A WS-Addressing version; the value is its namespace."""

    WSA_1_0 = "http://www.w3.org/2005/08/addressing"
    WSA_2004_08 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"


SOAP12 = SoapVersion.SOAP_1_2.value
SOAP11 = SoapVersion.SOAP_1_1.value
WSA10 = AddressingVersion.WSA_1_0.value
WSA200408 = AddressingVersion.WSA_2004_08.value
WSA200408_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
WSMC = "http://docs.oasis-open.org/ws-rx/wsmc/200702"
XML_NS = "http://www.w3.org/XML/1998/namespace"

PROTOCOL_NAMESPACES = frozenset(
    {SOAP12, SOAP11, WSA10, WSA200408, NETRM_NAMESPACE, *(v.value for v in RMVersion)}
)
"""Namespaces of the envelope itself, never part of an application payload's context."""

_CHUNK = 64 * 1024
_NO_DOCTYPE = "A DOCTYPE is not allowed in a message."


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on what ``decode`` will read.

    ``max_depth`` defaults to WCF's reader quota MaxDepth (32); elements are counted over the whole
    envelope. Input beyond any bound is refused before it is fully parsed.
    """

    max_bytes: int = 1024 * 1024
    max_depth: int = 32
    max_elements: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_elements"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = DecodeLimits()


def sender_fault(reason: str, *subcodes: Subcode) -> Fault:
    """A Sender fault: the message is at fault, do not resend it unchanged."""
    return Fault(FaultCode.SENDER, reason, subcodes)


_PROLOG_DOCTYPE = re.compile(r"\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.DOTALL)
_ENCODINGS = (  # (how the document starts, its encoding, bytes of byte-order mark)
    (b"\xef\xbb\xbf", "utf-8", 3),
    (b"\xff\xfe", "utf-16-le", 2),
    (b"\xfe\xff", "utf-16-be", 2),
    (b"<\x00", "utf-16-le", 0),
    (b"\x00<", "utf-16-be", 0),
)


def _prolog_has_doctype(data: bytes) -> bool:
    # Refuse a DOCTYPE before libxml2 reads a byte of it (it would process the internal subset
    # first); documents whose prolog this misses are still checked after parsing.
    head = data[:8192]
    for mark, encoding, skip in _ENCODINGS:
        if head.startswith(mark):
            return _PROLOG_DOCTYPE.match(head[skip:].decode(encoding, "ignore")) is not None
    return _PROLOG_DOCTYPE.match(head.decode("latin-1")) is not None


def _has_doctype(element: etree._Element) -> bool:
    info = element.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None or info.externalDTD is not None


def parse(data: bytes, limits: DecodeLimits) -> etree._Element:
    """Parse untrusted bytes, refusing DTDs, oversize, overdeep and overlong documents."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"decode expects bytes, not {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise EnvelopeRejected(
            sender_fault(f"The message is larger than the limit of {limits.max_bytes} bytes.")
        )
    if _prolog_has_doctype(bytes(data)):
        raise EnvelopeRejected(sender_fault(_NO_DOCTYPE))
    # Entities stay unexpanded, nothing is fetched, no DTD is read and libxml2's own size
    # limits stay on: a DOCTYPE is refused anyway, this only keeps it from doing harm first.
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    depth = count = 0
    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(bytes(data[offset : offset + _CHUNK]))
            for event, element in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                if count == 0 and _has_doctype(element):
                    raise EnvelopeRejected(sender_fault(_NO_DOCTYPE))
                depth, count = depth + 1, count + 1
                if depth > limits.max_depth:
                    raise EnvelopeRejected(
                        sender_fault(f"The message nests deeper than {limits.max_depth} elements.")
                    )
                if count > limits.max_elements:
                    raise EnvelopeRejected(
                        sender_fault(f"The message has more than {limits.max_elements} elements.")
                    )
        root: etree._Element = parser.close()
    except EnvelopeRejected:
        raise
    except (etree.LxmlError, ValueError) as error:
        raise EnvelopeRejected(
            sender_fault(f"The message is not well-formed XML: {error}")
        ) from error
    if _has_doctype(root):
        raise EnvelopeRejected(sender_fault(_NO_DOCTYPE))
    return root


def local_name(element: etree._Element) -> tuple[str, str]:
    """(namespace, local name) of an element."""
    qname = etree.QName(element)
    return qname.namespace or "", qname.localname


def elements(parent: etree._Element) -> list[etree._Element]:
    """The element children of ``parent`` (comments and PIs are removed by the parser)."""
    return [child for child in parent if isinstance(child.tag, str)]


_SCHEMA_SPACE = re.compile(r"[ \t\n\r]+")


def collapse(text: str | None) -> str:
    """XML Schema's whitespace collapse (anyURI, QName, unsignedLong, duration, enumerations)."""
    return _SCHEMA_SPACE.sub(" ", text or "").strip(" ")


def _standalone(child: etree._Element) -> etree._Element:
    # The element alone, with what it relies on from its context: every namespace it names
    # (deepcopy declares those) and every non-protocol namespace in scope, which QNames in text
    # or attribute values may use (xsi:type="soapenc:string"). Envelope namespaces it does not
    # name are left behind.
    context = {p: uri for p, uri in child.nsmap.items() if uri not in PROTOCOL_NAMESPACES}
    holder = etree.Element("holder", nsmap=context)
    holder.append(copy.deepcopy(child))
    return holder[0]


def canonical(children: Iterable[etree._Element]) -> bytes:
    """Body children as canonical XML (C14N 1.0 of each, standing alone as above)."""
    try:
        return b"".join(etree.tostring(_standalone(c), method="c14n") for c in children)
    except etree.C14NError as error:  # e.g. a relative namespace URI, which C14N forbids
        raise EnvelopeRejected(
            sender_fault(f"The message body cannot be canonicalized: {error}")
        ) from error


def payload_elements(xml: bytes, limits: DecodeLimits) -> list[etree._Element]:
    """Parse payload XML (one or more elements, whitespace between them) into elements."""
    wrapper = parse(b"<payload>" + xml + b"</payload>", limits)
    if collapse(wrapper.text) or any(collapse(child.tail) for child in wrapper):
        raise EnvelopeRejected(sender_fault("A SOAP body holds elements, not text."))
    children = elements(wrapper)
    if not children:
        raise EnvelopeRejected(sender_fault("A payload needs at least one element."))
    return children
