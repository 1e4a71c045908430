"""Hostile and broken input: always a typed error carrying a fault, never a crash or a leak."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import (
    Envelope,
    FaultCode,
    Payload,
    RMVersion,
    Sequence,
    SequenceAcknowledgement,
)
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import SOAP12, WSA10, validate

ENVELOPE = (
    f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header><a:Action>urn:x</a:Action>'
    "</s:Header><s:Body>{body}</s:Body></s:Envelope>"
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol9;</s:Body></s:Envelope>
"""


def _rejected(data: bytes, **limits: int) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as caught:
        codec.decode(data, limits=codec.DecodeLimits(**limits))
    return caught.value


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.perf_counter()
    error = _rejected(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1.0
    assert error.fault.code is FaultCode.SENDER
    assert error.fault.reason == "A DOCTYPE is not allowed in a message."


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE s:Envelope SYSTEM "http://127.0.0.1:9/evil.dtd">',
        '<!DOCTYPE s:Envelope [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
        "<!DOCTYPE s:Envelope>",
    ],
)
def test_external_entities_and_doctypes_are_refused_without_reading_anything(
    doctype: str,
) -> None:
    document = (doctype + ENVELOPE.format(body="<x>&xxe;</x>")).encode()
    error = _rejected(document)
    assert error.fault.code is FaultCode.SENDER
    assert "root:" not in error.fault.reason  # nothing of /etc/passwd leaks into the fault


def test_undeclared_entity_is_not_well_formed() -> None:
    error = _rejected(ENVELOPE.format(body="<x>&xxe;</x>").encode())
    assert error.fault.reason.startswith("The message is not well-formed XML")


def test_oversize_message_is_refused_before_parsing() -> None:
    document = ENVELOPE.format(body="<x>" + "a" * 2000 + "</x>").encode()
    error = _rejected(document, max_bytes=1000)
    assert error.fault.reason == "The message is larger than the limit of 1000 bytes."
    assert codec.decode(document).body == Payload(b"<x>" + b"a" * 2000 + b"</x>")
    assert _rejected(b"<" * (1024 * 1024 + 1)).fault.reason.startswith("The message is larger")


def test_too_deep_message_is_refused() -> None:
    body = "<x>" * 40 + "</x>" * 40
    error = _rejected(ENVELOPE.format(body=body).encode())
    assert error.fault.reason == "The message nests deeper than 32 elements."
    shallow = ENVELOPE.format(body="<x>" * 10 + "</x>" * 10).encode()
    assert codec.decode(shallow).body is not None
    assert _rejected(shallow, max_depth=8).fault.reason.endswith("deeper than 8 elements.")


def test_message_with_too_many_elements_is_refused() -> None:
    document = ENVELOPE.format(body="<x>" + "<y/>" * 20_000 + "</x>").encode()
    assert _rejected(document).fault.reason == "The message has more than 10000 elements."
    assert codec.decode(document, limits=codec.DecodeLimits(max_elements=30_000)).body


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe\x80garbage",
        b"not xml at all",
        b'{"json": true}',
        b"<html><body>oops</body></html>",
        b"<s:Envelope",
        ENVELOPE.format(body="<x>").encode(),
        b'<?xml version="1.0" encoding="UTF-16"?><a/>',
        "<a>\u00e9</a>".encode("latin-1"),
    ],
)
def test_garbage_and_non_xml_are_refused(data: bytes) -> None:
    error = _rejected(data)
    assert error.fault.code is FaultCode.SENDER


@pytest.mark.parametrize(
    ("document", "code", "reason"),
    [
        ("<foo/>", FaultCode.SENDER, "The message is not a SOAP envelope (its root is foo)."),
        (
            '<e:Envelope xmlns:e="urn:other"><e:Body/></e:Envelope>',
            FaultCode.VERSION_MISMATCH,
            "Unknown SOAP envelope namespace.",
        ),
        (
            f'<s:Envelope xmlns:s="{SOAP12}"/>',
            FaultCode.SENDER,
            "A SOAP envelope holds an optional Header and then a Body.",
        ),
        (
            f'<s:Envelope xmlns:s="{SOAP12}"><s:Body/><s:Header/></s:Envelope>',
            FaultCode.SENDER,
            "A SOAP envelope holds an optional Header and then a Body.",
        ),
        (
            f'<s:Envelope xmlns:s="{SOAP12}"><s:Body/><s:Body/></s:Envelope>',
            FaultCode.SENDER,
            "A SOAP envelope holds an optional Header and then a Body.",
        ),
        (
            f'<s:Envelope xmlns:s="{SOAP12}"><s:Body>text</s:Body></s:Envelope>',
            FaultCode.SENDER,
            "A SOAP body holds elements, not text.",
        ),
    ],
)
def test_wrong_root_and_structure_are_refused(document: str, code: FaultCode, reason: str) -> None:
    error = _rejected(document.encode())
    assert (error.fault.code, error.fault.reason) == (code, reason)


def test_decode_wants_bytes() -> None:
    with pytest.raises(TypeError):
        codec.decode("<a/>")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        codec.decode(data)
    except EnvelopeRejected as error:
        codec.encode_fault(error.fault, RMVersion.WSRM_1_1)


VALID = codec.encode(
    Envelope(
        action="urn:x",
        to="http://example.org/a",
        sequence=Sequence("urn:s", 7),
        acknowledgements=(SequenceAcknowledgement("urn:t", nacks=(2, 3)),),
        body=codec.make_payload(b"<p:x xmlns:p='urn:p'><y>1</y></p:x>"),
    ),
    RMVersion.WSRM_2005_02,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_envelopes_decode_or_are_refused_with_an_encodable_fault(
    data: st.DataObject,
) -> None:
    damaged = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        operation = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if operation == "flip":
            damaged[position] = data.draw(st.integers(0, 255))
        elif operation == "delete":
            del damaged[position]
        elif operation == "insert":
            damaged.insert(position, data.draw(st.sampled_from(b"<>/&;:=\"' x0")))
        else:
            del damaged[position:]
        if not damaged:
            damaged.extend(b"<")
    try:
        codec.decode(bytes(damaged))
    except EnvelopeRejected as error:
        refusal = error
    else:
        return
    document = codec.encode_fault(refusal.fault, refusal.rm_version or RMVersion.WSRM_1_1)
    assert codec.decode(document).body == refusal.fault


@pytest.mark.parametrize("version", list(RMVersion))
def test_a_refusal_fault_is_a_valid_envelope(version: RMVersion) -> None:
    error = _rejected(BILLION_LAUGHS)
    validate(codec.encode_fault(error.fault, version, relates_to="urn:uuid:1234"))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_doctype_is_found_whatever_the_encoding(encoding: str) -> None:
    text = '<?xml version="1.0"?><!-- hi --><!DOCTYPE a [<!ENTITY e "x">]>' + ENVELOPE.format(
        body="<x>&e;</x>"
    )
    error = _rejected(text.encode(encoding))
    assert error.fault.reason == "A DOCTYPE is not allowed in a message."


def test_doctype_after_a_long_prolog_is_still_refused() -> None:
    # Past what the fast prolog scan looks at: caught when the root element starts instead.
    text = "<!--" + "x" * 10_000 + "--><!DOCTYPE a>" + ENVELOPE.format(body="")
    assert _rejected(text.encode()).fault.reason == "A DOCTYPE is not allowed in a message."


def test_relative_namespace_in_the_body_is_refused() -> None:
    # Found by the damaged-envelope property: canonical XML forbids relative namespace URIs.
    error = _rejected(ENVELOPE.format(body='<p:x xmlns:p="urnp"/>').encode())
    assert error.fault.reason.startswith("The message body cannot be canonicalized")
