"""Property: every envelope the codec writes validates against the schemas and reads back equal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import validate
from tests.wsrm.strategies import envelopes, unicode_uris


@pytest.mark.parametrize("version", list(RMVersion))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_encoded_envelopes_validate_and_decode_to_the_same_value(
    version: RMVersion, data: st.DataObject
) -> None:
    envelope = data.draw(envelopes(version))
    document = codec.encode(envelope, version)
    validate(document)
    inbound = codec.decode_message(document)
    assert inbound.envelope == envelope
    assert inbound.soap_version is codec.SoapVersion.SOAP_1_2
    assert inbound.addressing_version is codec.AddressingVersion.WSA_1_0
    assert inbound.rm_version in (version, None)  # None: nothing in the envelope was WS-RM
    if envelope.sequence or envelope.ack_requested or envelope.acknowledgements:
        assert inbound.rm_version is version


@pytest.mark.parametrize("version", list(RMVersion))
@settings(max_examples=75, deadline=None)
@given(data=st.data())
def test_unicode_identifiers_and_texts_round_trip(version: RMVersion, data: st.DataObject) -> None:
    envelope = data.draw(envelopes(version, identifiers=unicode_uris))
    document = codec.encode(envelope, version)
    validate(document)
    assert codec.decode(document) == envelope
