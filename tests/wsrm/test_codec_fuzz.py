"""Hypothesis over the SOAP/WS-RM decoder the SOAP endpoint uses (``codec.decode_message``, then
``named_sequences``), fed random bytes and the real peers' messages mutated byte by byte and
element by element: the only error that may come out is ``EnvelopeRejected``, whose fault must
encode; anything else is a crash. The run prints how many inputs it tried and the crashes."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from durable_sessions.reliable.host import named_sequences
from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import shared_dir

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("DS_FUZZ_DECODER_EXAMPLES", "2500"))
SAMPLES = sorted((shared_dir() / "wsrm-messages").rglob("*.xml"))
MESSAGES = [path.read_bytes() for path in SAMPLES]


def _well_formed(document: bytes) -> bool:
    try:
        etree.fromstring(document, etree.XMLParser(resolve_entities=False))
    except etree.XMLSyntaxError:
        return False
    return True


TREES = [message for message in MESSAGES if _well_formed(message)]
"""The messages lxml can read: their elements are mutated (the rest only as bytes)."""
XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=40)
EDGE_TEXT = [
    "",
    " ",
    "0",
    "-1",
    "1",
    "18446744073709551615",
    "18446744073709551616",
    "9" * 40,
    "1e3",
    " 7 ",
    "+3",
    "0x10",
    "PT0S",
    "P1Y",
    "-PT1S",
    "urn:x",
    "http://",
    "not a uri",
    "true",
    "\u00e9\u2028",
    "]]>",
    "a" * 5000,
]
RM_NAMESPACES = [
    "http://schemas.xmlsoap.org/ws/2005/02/rm",
    "http://docs.oasis-open.org/ws-rx/wsrm/200702",
    "http://www.w3.org/2005/08/addressing",
    "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "http://www.w3.org/2003/05/soap-envelope",
    "http://schemas.xmlsoap.org/soap/envelope/",
    "urn:unknown",
]

tried = {"decoded": 0, "refused": 0}
crashes: list[str] = []


def _byte_mutant(data: st.DataObject, original: bytes) -> bytes:
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        if not damaged:
            damaged.extend(b"<")
        at = data.draw(st.integers(0, len(damaged) - 1))
        size = data.draw(st.integers(1, 64))
        operation = data.draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "cut"]))
        if operation == "flip":
            damaged[at] = data.draw(st.integers(0, 255))
        elif operation == "delete":
            del damaged[at : at + size]
        elif operation == "insert":
            damaged[at:at] = data.draw(st.binary(min_size=1, max_size=size))
        elif operation == "duplicate":
            damaged[at:at] = damaged[at : at + size]
        else:
            del damaged[at:]
    return bytes(damaged)


def _element_mutant(data: st.DataObject, original: bytes) -> bytes:
    root = etree.fromstring(original, etree.XMLParser(resolve_entities=False))
    for _ in range(data.draw(st.integers(1, 4))):
        elements = [e for e in root.iter() if isinstance(e.tag, str)]
        element = data.draw(st.sampled_from(elements))
        operation = data.draw(
            st.sampled_from(["text", "attribute", "delete", "duplicate", "rename", "move"])
        )
        parent = element.getparent()
        if operation == "text":
            element.text = data.draw(st.sampled_from(EDGE_TEXT) | XML_TEXT)
        elif operation == "attribute":
            name = data.draw(st.sampled_from(["Upper", "Lower", "mustUnderstand", "RelatesTo"]))
            element.set(name, data.draw(st.sampled_from(EDGE_TEXT)))
        elif operation == "delete" and parent is not None:
            parent.remove(element)
        elif operation == "duplicate" and parent is not None:
            parent.insert(parent.index(element), etree.fromstring(etree.tostring(element)))
        elif operation == "rename":
            local = etree.QName(element).localname
            element.tag = etree.QName(data.draw(st.sampled_from(RM_NAMESPACES)), local).text
        elif operation == "move" and parent is not None:
            target = data.draw(st.sampled_from(elements))
            if element not in target.iterancestors() and target is not element:
                target.append(element)
    return etree.tostring(root)


@st.composite
def inputs(draw: st.DrawFn) -> bytes:
    """Random bytes, or one of the real messages mutated as bytes or as elements."""
    data = draw(st.data())
    family = draw(st.sampled_from(["random", "bytes", "elements", "elements+bytes"]))
    if family == "random":
        return draw(st.binary(max_size=2000))
    if family == "bytes":
        return _byte_mutant(data, draw(st.sampled_from(MESSAGES)))
    mutated = _element_mutant(data, draw(st.sampled_from(TREES)))
    return _byte_mutant(data, mutated) if family == "elements+bytes" else mutated


def _decode_as_the_soap_endpoint_does(document: bytes) -> str:
    try:
        inbound = codec.decode_message(document)
    except EnvelopeRejected as refusal:
        codec.encode_fault(refusal.fault, refusal.rm_version or RMVersion.WSRM_1_1)
        return "refused"
    named_sequences(inbound.envelope)
    return "decoded"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(inputs())
def _fuzz(document: bytes) -> None:
    try:
        tried[_decode_as_the_soap_endpoint_does(document)] += 1
    except Exception as crash:  # anything but a refusal is a crash
        crashes.append(f"{type(crash).__name__}: {crash} on {document[:300]!r}")


def test_the_decoder_refuses_every_bad_envelope_and_never_crashes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(MESSAGES) >= 20, "the real peers' messages are the seeds"
    _fuzz()
    with capsys.disabled():
        print(
            f"\nWS-RM decoder fuzz: {sum(tried.values()) + len(crashes)} inputs tried from "
            f"{len(MESSAGES)} real messages ({tried['decoded']} decoded, {tried['refused']} "
            f"refused with a fault), {len(crashes)} crashes"
        )
    assert not crashes, "\n".join(crashes[:10])
