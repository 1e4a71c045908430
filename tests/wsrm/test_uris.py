"""URIs: the pure check agrees with libxml2's xs:anyURI, and the codec enforces it both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from durable_sessions.wsrm.errors import EncodeError, EnvelopeRejected
from durable_sessions.wsrm.lexical import is_absolute_uri, is_any_uri
from durable_sessions.wsrm.messages import (
    AckRequested,
    Envelope,
    RMVersion,
    Sequence,
)
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import RM11, SOAP12, WSA10

_ANY_URI = etree.XMLSchema(
    etree.fromstring(
        b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        b'<xs:element name="u" type="xs:anyURI"/></xs:schema>'
    )
)


def libxml2_accepts(text: str) -> bool:
    element = etree.Element("u")
    element.text = text
    return _ANY_URI.validate(element)


uri_like = st.text(
    st.sampled_from(list("aZ09:/?#[]@%.-_~!$&'()*+,;= \"<>{}|\\^`\u00e9")), max_size=16
).map(lambda s: " ".join(s.split()))


@settings(max_examples=1500, deadline=None)
@given(uri_like)
def test_uri_check_agrees_with_libxml2(text: str) -> None:
    assert is_any_uri(text) == libxml2_accepts(text)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("urn:uuid:6367739C8350488CD411576188379313", True),
        ("uuid:WLS2:store:WseeJaxwsFileStore:dece97a1d44772e7:-3fbed9f:13b4b7da0a6:-7fb6", True),
        ("http://Business456.com/RM/ABC", True),
        ("", True),
        ("relative/path", True),
        ("0uuid:x", False),  # a scheme starts with a letter; a relative path has no colon first
        ("u%id:x", False),  # % must start a %XX escape
        ("http://host:12ab/", False),
        ("a#b#c", False),
    ],
)
def test_uri_examples(text: str, valid: bool) -> None:
    assert is_any_uri(text) is valid
    assert is_any_uri(text) == libxml2_accepts(text)


def test_absolute_uris_need_a_scheme_and_no_spaces() -> None:
    assert is_absolute_uri("http://a/b")
    assert not is_absolute_uri("://Business456.com/clientA")
    assert not is_absolute_uri("http://a b")
    assert not is_absolute_uri("relative")


def test_decode_refuses_identifiers_and_headers_that_are_not_uris() -> None:
    def document(message_id: str, identifier: str) -> bytes:
        return (
            f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}" xmlns:r="{RM11}"><s:Header>'
            f"<a:Action>urn:x</a:Action><a:MessageID>{message_id}</a:MessageID>"
            f"<r:AckRequested><r:Identifier>{identifier}</r:Identifier></r:AckRequested>"
            "</s:Header><s:Body/></s:Envelope>"
        ).encode()

    assert codec.decode(document("urn:m", "urn:s")).ack_requested == (AckRequested("urn:s"),)
    with pytest.raises(EnvelopeRejected, match="Identifier must be a URI, not '0uuid:1'"):
        codec.decode(document("urn:m", "0uuid:1"))
    with pytest.raises(EnvelopeRejected, match="MessageID must be a URI") as caught:
        codec.decode(document("%%", "urn:s"))
    assert caught.value.fault.subcodes  # InvalidAddressingHeader


@pytest.mark.parametrize(
    "envelope",
    [
        Envelope("a#b#c"),
        Envelope("urn:x", message_id="u%id"),
        Envelope("urn:x", relates_to="0:x"),
        Envelope("urn:x", sequence=Sequence("0uuid:1", 1)),
    ],
)
def test_encode_refuses_what_is_not_a_uri(envelope: Envelope) -> None:
    with pytest.raises(EncodeError, match="must be a URI"):
        codec.encode(envelope, RMVersion.WSRM_1_1)
