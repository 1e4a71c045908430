"""Decoding details: numbers, cardinality, versions, SOAP 1.1 faults, mustUnderstand, roles."""

from __future__ import annotations

import pytest

from durable_sessions.wsrm import faults
from durable_sessions.wsrm.errors import EncodeError, EnvelopeRejected
from durable_sessions.wsrm.messages import (
    MAX_MESSAGE_NUMBER,
    WSA_ANONYMOUS,
    AckRange,
    AddressingFaultCode,
    CloseSequence,
    CreateSequence,
    EndpointReference,
    Envelope,
    Fault,
    FaultCode,
    Offer,
    Payload,
    QName,
    RMFaultCode,
    RMVersion,
    Sequence,
    SequenceAcknowledgement,
    TerminateSequence,
    rm_envelope,
)
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import NETRM, RM11, RM2005, SOAP12, WSA10, WSA200408

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def soap12(headers: str, body: str = "", *, rm: str = RM11, action: str = "urn:x") -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}" xmlns:r="{rm}"><s:Header>'
        f"<a:Action>{action}</a:Action>{headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def sequence(number: str) -> str:
    return (
        "<r:Sequence><r:Identifier>urn:s</r:Identifier>"
        f"<r:MessageNumber>{number}</r:MessageNumber></r:Sequence>"
    )


def rejected(document: bytes) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as caught:
        codec.decode(document)
    return caught.value


@pytest.mark.parametrize(
    ("text", "number"),
    [("1", 1), (" 42 ", 42), ("+7", 7), ("007", 7), (str(MAX_MESSAGE_NUMBER), MAX_MESSAGE_NUMBER)],
)
def test_message_numbers_are_read_as_xs_unsigned_long(text: str, number: int) -> None:
    assert codec.decode(soap12(sequence(text))).sequence == Sequence("urn:s", number)


@pytest.mark.parametrize("text", ["-1", "1.0", "1e3", "", "one", "1 2"])
def test_malformed_message_number_is_a_sender_fault(text: str) -> None:
    error = rejected(soap12(sequence(text)))
    assert error.fault.code is FaultCode.SENDER
    assert error.fault.reason.startswith("MessageNumber must be")


def test_message_number_zero_is_refused() -> None:
    assert rejected(soap12(sequence("0"))).fault.reason == "MessageNumber must be at least 1."


@pytest.mark.parametrize("number", [MAX_MESSAGE_NUMBER + 1, 2**64 - 1, 2**70])
def test_message_number_beyond_the_maximum_is_a_rollover_fault(number: int) -> None:
    error = rejected(soap12(sequence(str(number))))
    assert error.fault == faults.message_number_rollover("urn:s")
    assert error.rm_version is RMVersion.WSRM_1_1


def ack(inner: str) -> str:
    identifier = "<r:Identifier>urn:s</r:Identifier>"
    return f"<r:SequenceAcknowledgement>{identifier}{inner}</r:SequenceAcknowledgement>"


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        (
            '<r:AcknowledgementRange Upper="1" Lower="2"/>',
            "AcknowledgementRange 2-1 is not a valid range.",
        ),
        (
            '<r:AcknowledgementRange Upper="3" Lower="0"/>',
            "AcknowledgementRange 0-3 is not a valid range.",
        ),
        (
            '<r:AcknowledgementRange Upper="0" Lower="0"/>'
            '<r:AcknowledgementRange Upper="2" Lower="1"/>',
            "AcknowledgementRange 0-0 is not a valid range.",
        ),
        (
            '<r:AcknowledgementRange Upper="2" Lower="1"/><r:Nack>3</r:Nack>',
            "SequenceAcknowledgement does not allow Nack here.",
        ),
        ("<r:Nack>0</r:Nack>", "Nack must be between 1 and 9223372036854775807, not 0."),
        ("<r:Nack>2</r:Nack><r:Final/>", "SequenceAcknowledgement does not allow Final here."),
        ("", "SequenceAcknowledgement must contain None here."),
        (
            '<r:AcknowledgementRange Lower="1"/>',
            "AcknowledgementRange Upper must be a non-negative integer, not ''.",
        ),
    ],
)
def test_malformed_acknowledgements_are_refused(inner: str, reason: str) -> None:
    assert rejected(soap12(ack(inner))).fault.reason == reason


def test_acknowledgement_details() -> None:
    remaining = f'<m:BufferRemaining xmlns:m="{NETRM}"> 5 </m:BufferRemaining>'
    envelope = codec.decode(soap12(ack("<r:None/><r:Final/>" + remaining)))
    assert envelope.acknowledgements == (
        SequenceAcknowledgement("urn:s", final=True, buffer_remaining=5),
    )
    too_big = remaining.replace(" 5 ", str(2**31))
    assert (
        rejected(soap12(ack("<r:None/>" + too_big))).fault.reason
        == "BufferRemaining is out of range."
    )
    feb = codec.decode(soap12(ack('<r:AcknowledgementRange Upper="0" Lower="0"/>'), rm=RM2005))
    assert feb.acknowledgements == (SequenceAcknowledgement("urn:s"),)
    assert rejected(soap12(ack(""), rm=RM2005)).fault.reason == (
        "SequenceAcknowledgement must contain AcknowledgementRange or Nack."
    )


def test_version_specific_elements_are_refused_in_the_other_version() -> None:
    last = (
        "<r:Sequence><r:Identifier>s</r:Identifier><r:MessageNumber>1</r:MessageNumber>"
        "<r:LastMessage/></r:Sequence>"
    )
    assert rejected(soap12(last)).fault.reason == "Sequence does not allow LastMessage here."
    assert codec.decode(soap12(last, rm=RM2005)).sequence == Sequence("s", 1, last_message=True)
    close = "<r:CloseSequence><r:Identifier>s</r:Identifier></r:CloseSequence>"
    error = rejected(soap12("", close, rm=RM2005, action=f"{RM2005}/CloseSequence"))
    assert error.fault.subcodes == (AddressingFaultCode.ACTION_NOT_SUPPORTED,)
    ack_requested = (
        "<r:AckRequested><r:Identifier>s</r:Identifier>"
        "<r:MaxMessageNumberUsed>3</r:MaxMessageNumberUsed></r:AckRequested>"
    )
    assert codec.decode(soap12(ack_requested, rm=RM2005)).ack_requested
    assert (
        rejected(soap12(ack_requested)).fault.reason
        == "AckRequested does not allow MaxMessageNumberUsed here."
    )


def test_mixed_versions_are_refused() -> None:
    mixed = soap12(
        sequence("1")
        + f'<x:AckRequested xmlns:x="{RM2005}"><x:Identifier>s</x:Identifier></x:AckRequested>'
    )
    assert rejected(mixed).fault.reason == "The message mixes WS-ReliableMessaging versions."
    addressing = soap12(f'<b:To xmlns:b="{WSA200408}">http://x</b:To>')
    error = rejected(addressing)
    assert error.fault.subcodes == (
        AddressingFaultCode.INVALID_ADDRESSING_HEADER,
        AddressingFaultCode.INVALID_CARDINALITY,
    )


def test_repeated_addressing_header_is_invalid_cardinality() -> None:
    error = rejected(soap12("<a:Action>urn:y</a:Action>"))
    assert error.fault == Fault(
        FaultCode.SENDER,
        "The message has more than one Action header.",
        (AddressingFaultCode.INVALID_ADDRESSING_HEADER, AddressingFaultCode.INVALID_CARDINALITY),
    )
    assert rejected(soap12(sequence("1") + sequence("2"))).fault.reason == (
        "The message has more than one Sequence header."
    )


def test_missing_action_is_message_addressing_header_required() -> None:
    document = f'<s:Envelope xmlns:s="{SOAP12}"><s:Body/></s:Envelope>'.encode()
    error = rejected(document)
    assert error.fault.subcodes == (AddressingFaultCode.MESSAGE_ADDRESSING_HEADER_REQUIRED,)


def test_action_must_match_the_protocol_message() -> None:
    terminate = "<r:TerminateSequence><r:Identifier>s</r:Identifier></r:TerminateSequence>"
    assert codec.decode(
        soap12("", terminate, action=f"{RM11}/TerminateSequence")
    ).body == TerminateSequence("s")
    for action, body in [
        ("urn:app", terminate),
        (f"{RM11}/CloseSequence", terminate),
        (f"{RM11}/CreateSequence", ""),
        (f"{RM11}/CreateSequence", "<p/>"),
        (f"{RM11}/fault", "<p/>"),
    ]:
        error = rejected(soap12("", body, action=action))
        assert error.fault.subcodes[-1] is AddressingFaultCode.ACTION_MISMATCH, action
    for kind in ("AckRequested", "SequenceAcknowledgement"):
        error = rejected(soap12("", action=f"{RM11}/{kind}"))
        assert error.fault.reason == f"A {kind} message must carry its {kind} header."
    error = rejected(soap12(sequence("1"), rm=RM2005, action=f"{RM2005}/LastMessage"))
    assert error.fault.reason == "A LastMessage message must carry its LastMessage header."


def test_unknown_must_understand_header_is_a_must_understand_fault() -> None:
    header = '<w:Security xmlns:w="urn:sec" s:mustUnderstand="true"/>'
    error = rejected(soap12(header))
    assert error.fault.code is FaultCode.MUST_UNDERSTAND
    assert error.fault.reason == "The header {urn:sec}Security was not understood."
    ignored = '<w:Security xmlns:w="urn:sec" s:mustUnderstand="0"/><w:Other xmlns:w="urn:sec"/>'
    assert codec.decode(soap12(ignored)).action == "urn:x"


def test_headers_for_other_soap_nodes_are_ignored() -> None:
    other_node = f'<w:Security xmlns:w="urn:sec" s:mustUnderstand="1" s:role="{SOAP12}/role/none"/>'
    assert codec.decode(soap12(other_node)).action == "urn:x"
    next_node = f'<w:Security xmlns:w="urn:sec" s:mustUnderstand="1" s:role="{SOAP12}/role/next"/>'
    assert rejected(soap12(next_node)).fault.code is FaultCode.MUST_UNDERSTAND


def test_addresses_must_be_absolute_and_2004_anonymous_is_normalized() -> None:
    anonymous = f"<b:Address>{WSA200408}/role/anonymous</b:Address>"
    reply = f'<b:ReplyTo xmlns:b="{WSA200408}">{anonymous}</b:ReplyTo>'
    document = (
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:b="{WSA200408}"><s:Header><b:Action>urn:x</b:Action>'
        f"{reply}</s:Header><s:Body/></s:Envelope>"
    ).encode()
    assert codec.decode(document).reply_to == EndpointReference(WSA_ANONYMOUS)
    error = rejected(soap12("<a:ReplyTo><a:Address>relative/path</a:Address></a:ReplyTo>"))
    assert error.fault.subcodes[-1] is AddressingFaultCode.INVALID_ADDRESS
    error = rejected(soap12("<a:FaultTo><a:Other/></a:FaultTo>"))
    assert error.fault.subcodes[-1] is AddressingFaultCode.MISSING_ADDRESS_IN_EPR


def test_expires_and_incomplete_sequence_behaviour_are_checked() -> None:
    create = (
        "<r:CreateSequence><r:AcksTo><a:Address>http://a</a:Address></r:AcksTo>"
        "<r:Expires>{}</r:Expires></r:CreateSequence>"
    )
    action = f"{RM11}/CreateSequence"
    assert codec.decode(soap12("", create.format(" PT1H "), action=action)).body is not None
    assert rejected(soap12("", create.format("1 hour"), action=action)).fault.reason == (
        "Expires must be an xs:duration, not '1 hour'."
    )
    response = (
        "<r:CreateSequenceResponse><r:Identifier>s</r:Identifier>"
        "<r:IncompleteSequenceBehavior>Sometimes</r:IncompleteSequenceBehavior>"
        "</r:CreateSequenceResponse>"
    )
    error = rejected(soap12("", response, action=f"{RM11}/CreateSequenceResponse"))
    assert error.fault.reason == "'Sometimes' is not an IncompleteSequenceBehavior."


def test_soap11_faults_and_sequence_fault_headers_are_read() -> None:
    document = (
        f'<e:Envelope xmlns:e="{SOAP11}" xmlns:a="{WSA10}" xmlns:r="{RM11}"><e:Header>'
        f"<a:Action>{RM11}/fault</a:Action>"
        "<r:SequenceFault><r:FaultCode>r:UnknownSequence</r:FaultCode>"
        "<r:Detail><r:Identifier>urn:s</r:Identifier></r:Detail></r:SequenceFault>"
        "</e:Header><e:Body><e:Fault><faultcode>e:Client</faultcode>"
        f"<faultstring>{faults.UNKNOWN_SEQUENCE}</faultstring></e:Fault></e:Body></e:Envelope>"
    ).encode()
    inbound = codec.decode_message(document)
    assert inbound.envelope.body == faults.unknown_sequence("urn:s")
    assert inbound.soap_version is codec.SoapVersion.SOAP_1_1
    required = (
        f'<e:Envelope xmlns:e="{SOAP11}" xmlns:a="{WSA10}" xmlns:r="{RM11}"><e:Header>'
        f"<a:Action>{RM11}/fault</a:Action></e:Header><e:Body><e:Fault>"
        "<faultcode>r:WSRMRequired</faultcode>"
        "<faultstring> The RM Destination requires the use of WSRM. "
        "</faultstring></e:Fault></e:Body></e:Envelope>"
    ).encode()
    assert codec.decode(required).body == faults.wsrm_required()
    feb = (
        f'<e:Envelope xmlns:e="{SOAP11}" xmlns:a="{WSA10}" xmlns:r="{RM2005}"><e:Header>'
        f"<a:Action>urn:f</a:Action><r:SequenceFault><r:FaultCode>r:SequenceTerminated</r:FaultCode>"
        "<r:Identifier>urn:t</r:Identifier></r:SequenceFault></e:Header><e:Body><e:Fault>"
        "<faultcode>e:Server</faultcode><faultstring>gone</faultstring></e:Fault></e:Body></e:Envelope>"
    ).encode()
    assert codec.decode(feb).body == faults.sequence_terminated("urn:t", "gone", sender=False)


def test_soap12_fault_details() -> None:
    fault = (
        "<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode>"
        '<s:Value xmlns:z="urn:z">z:Custom</s:Value></s:Subcode></s:Code>'
        '<s:Reason><s:Text xml:lang="de">Kaputt</s:Text>'
        '<s:Text xml:lang="en-US">Broken</s:Text></s:Reason>'
        "<s:Detail><r:Identifier>urn:s</r:Identifier><r:MaxMessageNumber>9</r:MaxMessageNumber></s:Detail>"
        "</s:Fault>"
    )
    body = codec.decode(soap12("", fault)).body
    assert body == Fault(FaultCode.SENDER, "Broken", (QName("urn:z", "Custom"),), "urn:s")
    undeclared = fault.replace(' xmlns:z="urn:z"', "")
    assert (
        rejected(soap12("", undeclared)).fault.reason
        == "The fault code prefix 'z' is not declared."
    )
    spaced = fault.replace("z:Custom", "z:Cus tom")
    assert rejected(soap12("", spaced)).fault.reason == "'z:Cus tom' is not a qualified name."
    wrong_code = fault.replace("s:Sender", "s:Whatever")
    assert (
        rejected(soap12("", wrong_code)).fault.reason == "'Whatever' is not a SOAP 1.2 fault code."
    )


def test_a_fault_or_protocol_message_does_not_share_the_body() -> None:
    error = rejected(
        soap12(
            "",
            "<r:CloseSequence><r:Identifier>s</r:Identifier></r:CloseSequence><p/>",
            action=f"{RM11}/CloseSequence",
        )
    )
    assert error.fault.reason == "A CloseSequence body cannot share the body with other elements."


def test_rejection_reports_message_id_and_version() -> None:
    error = rejected(soap12("<a:MessageID>urn:uuid:42</a:MessageID>" + sequence("0")))
    assert (error.message_id, error.rm_version) == ("urn:uuid:42", RMVersion.WSRM_1_1)


@pytest.mark.parametrize(
    ("envelope", "version", "message"),
    [
        (
            rm_envelope(CloseSequence("s"), RMVersion.WSRM_1_1),
            RMVersion.WSRM_2005_02,
            "WS-RM February 2005 cannot express CloseSequence",
        ),
        (
            Envelope("urn:x", sequence=Sequence("s", 1, last_message=True)),
            RMVersion.WSRM_1_1,
            "WS-RM 1.1 cannot express LastMessage",
        ),
        (
            Envelope("urn:x", acknowledgements=(SequenceAcknowledgement("s", final=True),)),
            RMVersion.WSRM_2005_02,
            "WS-RM February 2005 cannot express a Final acknowledgement",
        ),
        (
            rm_envelope(TerminateSequence("s", 3), RMVersion.WSRM_2005_02),
            RMVersion.WSRM_2005_02,
            "WS-RM February 2005 cannot express LastMsgNumber",
        ),
        (
            Envelope("urn:x", body=faults.sequence_closed("s")),
            RMVersion.WSRM_2005_02,
            "WS-RM February 2005 cannot express a SequenceClosed fault",
        ),
        (
            Envelope("urn:x", body=faults.last_message_number_exceeded("s")),
            RMVersion.WSRM_1_1,
            "WS-RM 1.1 cannot express a LastMessageNumberExceeded fault",
        ),
        (
            Envelope("urn:x", message_id="bad\x00id"),
            RMVersion.WSRM_1_1,
            "the envelope holds text XML cannot carry",
        ),
        (
            Envelope("urn:x", body=Payload(b"<unclosed>")),
            RMVersion.WSRM_1_1,
            "the payload is not usable XML",
        ),
    ],
)
def test_encode_refuses_what_the_version_cannot_express(
    envelope: Envelope, version: RMVersion, message: str
) -> None:
    with pytest.raises(EncodeError, match=message):
        codec.encode(envelope, version)


def test_offers_follow_their_version() -> None:
    without_endpoint = rm_envelope(
        CreateSequence(EndpointReference("http://a"), offer=Offer("o")), RMVersion.WSRM_1_1
    )
    with pytest.raises(EncodeError, match="an Offer without an Endpoint"):
        codec.encode(without_endpoint, RMVersion.WSRM_1_1)
    with_endpoint = rm_envelope(
        CreateSequence(
            EndpointReference("http://a"), offer=Offer("o", EndpointReference("http://e"))
        ),
        RMVersion.WSRM_2005_02,
    )
    with pytest.raises(EncodeError, match="an Offer Endpoint"):
        codec.encode(with_endpoint, RMVersion.WSRM_2005_02)


def test_make_payload_canonicalizes_and_refuses_non_body_xml() -> None:
    assert codec.make_payload("<a  b='1'   c=\"2\"/>") == Payload(b'<a b="1" c="2"></a>')
    assert codec.make_payload(b"<a/> <b/>") == Payload(b"<a></a><b></b>")
    for bad in [
        "",
        "text",
        "<a/>tail",
        "<?xml version='1.0'?><a/>",
        "<a>",
        "<!DOCTYPE a><a/>",
        '<p:a xmlns:p="relative"/>',
    ]:
        with pytest.raises(EncodeError):
            codec.make_payload(bad)


def test_ack_range_value_checks() -> None:
    with pytest.raises(ValueError, match="reversed"):
        AckRange(3, 2)
    with pytest.raises(ValueError, match="ranges or nacks"):
        SequenceAcknowledgement("s", (AckRange(1, 1),), (2,))
    with pytest.raises(ValueError, match="absolute URI"):
        Envelope("urn:x", to="not a uri")
    assert RMFaultCode.SEQUENCE_TERMINATED.value == "SequenceTerminated"


@pytest.mark.parametrize(
    "xml",
    [
        # Found by fuzzing: a payload using the envelope's own namespaces under its own prefixes.
        f'<m:M xmlns:m="urn:m"><wsrm:I xmlns:wsrm="{RM11}">urn:x</wsrm:I></m:M>',
        '<s:x xmlns:s="urn:not-soap"><a:y xmlns:a="urn:not-addressing"/></s:x>',
        f'<x xmlns="{SOAP12}"/>',
        # QNames in content keep their namespaces, declared anywhere in the payload
        '<p:x xmlns:p="urn:p" xmlns:t="urn:t"><y xmlns:u="urn:u" v="u:w">t:z</y></p:x>',
    ],
)
def test_payloads_keep_their_own_prefixes(xml: str) -> None:
    envelope = Envelope("urn:x", body=codec.make_payload(xml))
    for version in RMVersion:
        assert codec.decode(codec.encode(envelope, version)) == envelope
