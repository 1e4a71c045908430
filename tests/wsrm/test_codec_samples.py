"""Every sample wire message in ``data/wsrm-messages`` decodes to the right values or error.

Samples that decode are re-encoded (SOAP 1.2, WS-Addressing 1.0, same WS-RM version); the result
validates against the schemas and decodes to the same value.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_sessions.wsrm import faults
from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import (
    Accept,
    AckRange,
    AckRequested,
    AddressingFaultCode,
    CloseSequence,
    CloseSequenceResponse,
    CreateSequence,
    CreateSequenceResponse,
    EndpointReference,
    Envelope,
    Fault,
    FaultCode,
    IncompleteSequenceBehavior,
    NetRMFaultCode,
    Offer,
    Payload,
    RMFaultCode,
    RMVersion,
    Sequence,
    SequenceAcknowledgement,
    TerminateSequence,
    TerminateSequenceResponse,
)
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import NETRM, RM11, RM2005, SOAP12, WSA10, validate

V11 = RMVersion.WSRM_1_1
V2005 = RMVersion.WSRM_2005_02
SOAP11 = codec.SoapVersion.SOAP_1_1
WSA2004 = codec.AddressingVersion.WSA_2004_08
CXF_ID = "http://Business456.com/RM/ABC"
WCF_ID = "urn:uuid:656652b8-9af2-4e94-9d07-2dc21c05ed27"
WLS_ID = "uuid:WLS2:store:WseeJaxwsFileStore:dece97a1d44772e7:-3fbed9f:13b4b7da0a6:-7fb6"
RM10_ID = "urn:uuid:addabbbf-60cb-44d3-8c5b-9e0841629a36"
SANDESHA_TO = "http://127.0.0.1:9070/axis/services/RMService"
INDIGO = (
    "http://10.245.29.191:9902/ReliableMessaging_Service_WSAddressing10_Indigo/OneWay.svc/"
    "Reliable_Addressable_Soap12_WSAddressing10_RM11"
)


def _with_namespaces(text: str, rm: str, wsa: str = WSA10) -> bytes:
    """A wcf-docs snippet with the namespace declarations the documentation leaves out."""
    declarations = f'xmlns:s="{SOAP12}" xmlns:wsa="{wsa}" xmlns:wsrm="{rm}" xmlns:netrm="{NETRM}"'
    if text.startswith("<s:Envelope>"):
        return text.replace("<s:Envelope>", f"<s:Envelope {declarations}>", 1).encode()
    action = {"Sequence": "LastMessage", "SequenceAcknowledgement": "SequenceAcknowledgement"}[
        text.split(">", 1)[0].split(":", 1)[1]
    ]
    return (
        f"<s:Envelope {declarations}><s:Header><wsa:Action>{rm}/{action}</wsa:Action>{text}"
        f"</s:Header><s:Body/></s:Envelope>"
    ).encode()


def _wcf_doc(samples: Path, name: str, rm: str, *, fix_typo: bool = True) -> bytes:
    text = (samples / "wcf-docs" / name).read_text()
    if fix_typo:
        text = text.replace(
            '<wsa:To s:mustUnderstand="1">://', '<wsa:To s:mustUnderstand="1">http://'
        )
    return _with_namespaces(text, rm)


def _final_ack(identifier: str) -> tuple[SequenceAcknowledgement, ...]:
    return (
        SequenceAcknowledgement(identifier, (AckRange(1, 30),), final=True, buffer_remaining=8),
    )


# file -> (expected envelope, SOAP version, WS-A version, WS-RM version)
DECODED: dict[str, tuple[Envelope, codec.SoapVersion, codec.AddressingVersion, RMVersion]] = {
    "cxf__Acknowledgment.xml": (
        Envelope(
            action=f"{RM2005}/SequenceAcknowledgement",
            to="http://Business456.com/serviceA/789",
            message_id="http://fabrikam123.com/guid/0baaf88d-483b-4ecf-a6d8-a7c2eb546810",
            acknowledgements=(SequenceAcknowledgement(CXF_ID, (AckRange(1, 1), AckRange(3, 3))),),
        ),
        SOAP11,
        WSA2004,
        V2005,
    ),
    "cxf__Acknowledgment2.xml": (  # Upper=" 3" Lower=" 1 ": xs:unsignedLong collapses spaces
        Envelope(
            action=f"{RM2005}/SequenceAcknowledgement",
            to="http://Business456.com/serviceA/789",
            message_id="http://fabrikam123.com/guid/0baaf88d-483b-4ecf-a6d8-a7c2eb546810",
            acknowledgements=(SequenceAcknowledgement(CXF_ID, (AckRange(1, 3),)),),
        ),
        SOAP11,
        WSA2004,
        V2005,
    ),
    "cxf__Message1.xml": (
        Envelope(
            action="http://fabrikam123.com/serviceB/123/request",
            to="http://fabrikam123.com/serviceB/123",
            message_id="http://Business456.com/guid/71e0654e-5ce8-477b-bb9d-34f05cfcbc9e",
            sequence=Sequence(CXF_ID, 1),
        ),
        SOAP11,
        WSA2004,
        V2005,
    ),
    "cxf__Retransmission.xml": (
        Envelope(
            action="http://fabrikam123.com/serviceB/123/request",
            to="http://fabrikam123.com/serviceB/123",
            message_id="http://Business456.com/guid/daa7d0b2-c8e0-476e-a9a4-d164154e38de",
            sequence=Sequence(CXF_ID, 2),
            ack_requested=(AckRequested(CXF_ID),),
        ),
        SOAP11,
        WSA2004,
        V2005,
    ),
    "metro-jax-ws__ReplaceAddressingHeaderTest_reqMsgStr_AckRequested.xml": (
        Envelope(action=f"{RM11}/AckRequested", to=INDIGO, ack_requested=(AckRequested(WLS_ID),)),
        codec.SoapVersion.SOAP_1_2,
        codec.AddressingVersion.WSA_1_0,
        V11,
    ),
    "metro-jax-ws__ReplaceAddressingHeaderTest_respMsgStr_SequenceAcknowledgement.xml": (
        Envelope(
            action=f"{RM11}/SequenceAcknowledgement",
            to="http://10.244.13.245:8000/bcabf5e4-d888-403c-a93e-99ed5e7f4a40/"
            "fe5c31e3-a8af-40ed-8066-e41c3ba9f742",
            reply_to=EndpointReference(INDIGO),
            acknowledgements=(SequenceAcknowledgement(WLS_ID, (AckRange(1, 3),)),),
        ),
        codec.SoapVersion.SOAP_1_2,
        codec.AddressingVersion.WSA_1_0,
        V11,
    ),
    "sandesha2__AckRequested.xml": (
        Envelope(
            action=f"{RM2005}/AckRequested",
            to=SANDESHA_TO,
            message_id="uuid:8d8f8d80-1624-11da-a28e-b3b9c4e71445",
            ack_requested=(AckRequested("uuid:897ee740-1624-11da-a28e-b3b9c4e71445"),),
        ),
        SOAP11,
        codec.AddressingVersion.WSA_1_0,
        V2005,
    ),
    "sandesha2__CreateSequence.xml": (  # WS-A 1.0 AcksTo in a February 2005 body: accepted
        Envelope(
            action=f"{RM2005}/CreateSequence",
            to="http://localhost:8070/axis/services/TestService",
            message_id="uuid:c3671020-15e0-11da-9b3a-f0439d4867bd",
            reply_to=EndpointReference("http://127.0.0.1:9090/axis/services/RMService"),
            body=CreateSequence(
                EndpointReference("http://127.0.0.1:9090/axis/services/RMService"),
                offer=Offer("uuid:c3671020-15e0-11da-9b3b-f0439d4867bd"),
            ),
        ),
        SOAP11,
        codec.AddressingVersion.WSA_1_0,
        V2005,
    ),
    "sandesha2__CreateSequenceResponse.xml": (
        Envelope(
            action=f"{RM2005}/CreateSequenceResponse",
            to=SANDESHA_TO,
            message_id="uuid:88754b00-161a-11da-b6d6-8198de3c47c5",
            relates_to="uuid:872e4c10-161a-11da-9ef7-bd9ad94438a3",
            body=CreateSequenceResponse(
                "uuid:88754b00-161a-11da-b6d6-8198de3c47c5",
                accept=Accept(EndpointReference("http://localhost:8070/axis/services/TestService")),
            ),
        ),
        SOAP11,
        codec.AddressingVersion.WSA_1_0,
        V2005,
    ),
    "sandesha2__Sequence.xml": (
        Envelope(
            action="urn:wsrm:echoStringResponse",
            to=SANDESHA_TO,
            message_id="uuid:8c00b020-1624-11da-a28e-b3b9c4e71445",
            relates_to="uuid:87a0b160-1624-11da-bed9-84d13db13902",
            sequence=Sequence("uuid:879da420-1624-11da-bed9-84d13db13902", 1),
            body=Payload(
                b'<ns1:echoStringResponse xmlns:ns1="http://tempuri.org/"'
                b' xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
                b' xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
                b' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
                b' soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">\n'
                b"            <echoStringReturn"
                b' xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"'
                b' xsi:type="soapenc:string">Sandesha Echo 1</echoStringReturn>\n'
                b"         </ns1:echoStringResponse>"
            ),
        ),
        SOAP11,
        codec.AddressingVersion.WSA_1_0,
        V2005,
    ),
}


@pytest.mark.parametrize("name", sorted(DECODED))
def test_sample_decodes_to_its_values(samples: Path, name: str) -> None:
    expected, soap, wsa, rm = DECODED[name]
    inbound = codec.decode_message((samples / name).read_bytes())
    assert inbound.envelope == expected
    assert (inbound.soap_version, inbound.addressing_version, inbound.rm_version) == (soap, wsa, rm)
    _reencoded_is_valid(inbound.envelope, rm)


def _reencoded_is_valid(envelope: Envelope, version: RMVersion) -> None:
    document = codec.encode(envelope, version)
    validate(document)
    assert codec.decode(document) == envelope


WCF_DOCS: dict[str, tuple[RMVersion, Envelope]] = {
    "wcf-rm11__CreateSequence.xml": (
        V11,
        Envelope(
            action=f"{RM11}/CreateSequence",
            message_id="urn:uuid:949cca61-8813-42ff-ab33-18d9e3fa82fa",
            reply_to=EndpointReference("http://Business456.com/clientA"),
            to="http://BusinessABC.com/serviceA",
            body=CreateSequence(
                EndpointReference("http://Business456.com/clientA"),
                offer=Offer(
                    "urn:uuid:066b4730-fc82-458a-a5c1-210be4fb4e4e",
                    EndpointReference("http://Business456.com/clientA"),
                    incomplete_sequence_behavior=IncompleteSequenceBehavior.DISCARD_FOLLOWING_FIRST_GAP,
                ),
            ),
        ),
    ),
    "wcf-rm11__CreateSequenceResponse.xml": (
        V11,
        Envelope(
            action=f"{RM11}/CreateSequenceResponse",
            relates_to="urn:uuid:949cca61-8813-42ff-ab33-18d9e3fa82fa",
            to="http://Business456.com/clientA",
            body=CreateSequenceResponse(
                WCF_ID,
                incomplete_sequence_behavior=IncompleteSequenceBehavior.DISCARD_FOLLOWING_FIRST_GAP,
                accept=Accept(EndpointReference("http://BusinessABC.com/serviceA")),
            ),
        ),
    ),
    "wcf-rm11__CloseSequence.xml": (
        V11,
        Envelope(
            action=f"{RM11}/CloseSequence",
            message_id="urn:uuid:6ce1d4c3-e1c1-474f-a8c9-4210e37f7877",
            reply_to=EndpointReference("http://Business456.com/clientA"),
            to="http://BusinessABC.com/serviceA",
            body=CloseSequence(WCF_ID, 30),
        ),
    ),
    "wcf-rm11__CloseSequenceResponse.xml": (
        V11,
        Envelope(
            action=f"{RM11}/CloseSequenceResponse",
            relates_to="urn:uuid:6ce1d4c3-e1c1-474f-a8c9-4210e37f7877",
            to="http://Business456.com/clientA",
            acknowledgements=_final_ack(WCF_ID),
            body=CloseSequenceResponse(WCF_ID),
        ),
    ),
    "wcf-rm11__TerminateSequence.xml": (
        V11,
        Envelope(
            action=f"{RM11}/TerminateSequence",
            message_id="urn:uuid:3597a398-4f3c-40f4-9335-8f1515572fdf",
            reply_to=EndpointReference("http://Business456.com/clientA"),
            to="http://BusinessABC.com/serviceA",
            body=TerminateSequence(WCF_ID, 30),
        ),
    ),
    "wcf-rm11__TerminateSequenceResponse.xml": (
        V11,
        Envelope(
            action=f"{RM11}/TerminateSequenceResponse",
            relates_to="urn:uuid:3597a398-4f3c-40f4-9335-8f1515572fdf",
            to="http://Business456.com/clientA",  # the docs have "://Business456...": see below
            acknowledgements=_final_ack(WCF_ID),
            body=TerminateSequenceResponse(WCF_ID),
        ),
    ),
    "wcf-rm11__Fault_CreateSequenceRefused_ConnectionLimitReached.xml": (
        V11,
        Envelope(
            action=f"{RM11}/fault",
            body=faults.connection_limit_reached("http://BusinessABC.com/serviceA"),
        ),
    ),
    "wcf-rm10__Fault_CreateSequenceRefused_ConnectionLimitReached.xml": (
        V2005,
        Envelope(
            action="http://schemas.xmlsoap.org/ws/2005/08/addressing/fault",
            body=Fault(
                FaultCode.RECEIVER,
                "[Reason]",
                (RMFaultCode.CREATE_SEQUENCE_REFUSED, NetRMFaultCode.CONNECTION_LIMIT_REACHED),
            ),
        ),
    ),
    "wcf-rm10__Sequence_LastMessage_header.xml": (
        V2005,
        Envelope(action=f"{RM2005}/LastMessage", sequence=Sequence(RM10_ID, 10, last_message=True)),
    ),
    "wcf-rm10__SequenceAcknowledgement_0-0_header.xml": (
        V2005,
        Envelope(
            action=f"{RM2005}/SequenceAcknowledgement",
            acknowledgements=(SequenceAcknowledgement(RM10_ID),),  # 0-0: nothing received yet
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(WCF_DOCS))
def test_wcf_documentation_sample_decodes_once_its_namespaces_are_declared(
    samples: Path, name: str
) -> None:
    version, expected = WCF_DOCS[name]
    with pytest.raises(EnvelopeRejected, match="not well-formed XML: Namespace prefix"):
        codec.decode((samples / "wcf-docs" / name).read_bytes())
    inbound = codec.decode_message(_wcf_doc(samples, name, version.value))
    assert inbound.envelope == expected
    assert inbound.rm_version is version
    _reencoded_is_valid(inbound.envelope, version)


def test_wcf_documentation_typo_in_to_is_an_invalid_address(samples: Path) -> None:
    document = _wcf_doc(samples, "wcf-rm11__TerminateSequenceResponse.xml", RM11, fix_typo=False)
    with pytest.raises(EnvelopeRejected) as caught:
        codec.decode(document)
    assert caught.value.fault == Fault(
        FaultCode.SENDER,
        "To must be an absolute URI, not '://Business456.com/clientA'.",
        (AddressingFaultCode.INVALID_ADDRESSING_HEADER, AddressingFaultCode.INVALID_ADDRESS),
    )


def test_wcf_documentation_addressing_namespace_is_not_ws_addressing(samples: Path) -> None:
    # The docs' prefix table maps wsa to http://schemas.xmlsoap.org/ws/2005/08/addressing, which
    # is no WS-Addressing version: with it, the Action header is foreign and so missing.
    text = samples / "wcf-docs/wcf-rm10__Fault_CreateSequenceRefused_ConnectionLimitReached.xml"
    document = _with_namespaces(
        text.read_text(), RM2005, wsa="http://schemas.xmlsoap.org/ws/2005/08/addressing"
    )
    with pytest.raises(EnvelopeRejected) as caught:
        codec.decode(document)
    assert caught.value.fault.subcodes == (AddressingFaultCode.MESSAGE_ADDRESSING_HEADER_REQUIRED,)


def _mismatch(reason: str) -> Fault:
    return Fault(
        FaultCode.SENDER,
        reason,
        (AddressingFaultCode.INVALID_ADDRESSING_HEADER, AddressingFaultCode.ACTION_MISMATCH),
    )


# Samples that are invalid on purpose (``SOURCES.md``) and the fault each one earns.
REJECTED: dict[str, Fault] = {
    "sandesha2__SequenceAcknowledgement.xml": Fault(  # ranges and Nack mixed, Identifier last
        FaultCode.SENDER, "SequenceAcknowledgement must contain Identifier here."
    ),
    "sandesha2__TerminateSequence.xml": _mismatch(  # 1.1 body, February 2005 action
        f"The action '{RM2005}/TerminateSequence' does not match its WS-RM 1.1 elements."
    ),
    "sandesha2__MakeConnection.xml": Fault(
        FaultCode.SENDER,
        "WS-MakeConnection is not supported.",
        (AddressingFaultCode.ACTION_NOT_SUPPORTED,),
    ),
    "sandesha2__MessagePending.xml": Fault(  # a Sequence header without MessageNumber
        FaultCode.SENDER, "Sequence must contain MessageNumber here."
    ),
    "metro-wsit__RM_1.1_TerminateSequence.xml": Fault(  # a bare element, not an envelope
        FaultCode.SENDER, "The message is not a SOAP envelope (its root is TerminateSequence)."
    ),
    # JBossWS emulator templates, ${...} placeholders unfilled
    "jbossws-native__createSequenceResponse.xml": _mismatch(
        "The action '${res.wsa.action}' does not match CreateSequenceResponse."
    ),
    "jbossws-native__closeSequenceResponse.xml": _mismatch(
        "The action '${res.wsa.action}' does not match CloseSequenceResponse."
    ),
    "jbossws-native__terminateSequenceResponse.xml": _mismatch(
        "The action '${res.wsa.action}' does not match TerminateSequenceResponse."
    ),
    "jbossws-native__sequenceAckResponse.xml": Fault(
        FaultCode.SENDER,
        "AcknowledgementRange Lower must be a non-negative integer, not '${res.wsrm.ack.lower}'.",
    ),
    "jbossws-native__echoResponse.xml": Fault(
        FaultCode.SENDER,
        "MessageNumber must be a non-negative integer, not '${res.wsrm.messagenumber}'.",
    ),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_invalid_sample_is_rejected_with_its_fault(samples: Path, name: str) -> None:
    with pytest.raises(EnvelopeRejected) as caught:
        codec.decode((samples / name).read_bytes())
    assert caught.value.fault == REJECTED[name]


def test_every_sample_is_covered(samples: Path) -> None:
    names = {p.name for p in samples.glob("*.xml")}
    assert names == set(DECODED) | set(REJECTED)
    assert {p.name for p in (samples / "wcf-docs").glob("*.xml")} == set(WCF_DOCS)


FILLED = {
    "${res.wsa.to}": "http://client.example/acks",
    "${res.wsa.relatesto}": "urn:uuid:11111111-2222-3333-4444-555555555555",
    "${res.wsrm.sequenceid}": "urn:uuid:66666666-7777-8888-9999-000000000000",
    "${res.wsrm.messagenumber}": "5",
    "${res.wsrm.ack.lower}": "1",
    "${res.wsrm.ack.upper}": "4",
}
SEQ = FILLED["${res.wsrm.sequenceid}"]


@pytest.mark.parametrize(
    ("name", "action", "body", "headers"),
    [
        (
            "jbossws-native__createSequenceResponse.xml",
            "CreateSequenceResponse",
            CreateSequenceResponse(
                SEQ, "PT10S", IncompleteSequenceBehavior.DISCARD_ENTIRE_SEQUENCE
            ),
            {},
        ),
        (
            "jbossws-native__closeSequenceResponse.xml",
            "CloseSequenceResponse",
            CloseSequenceResponse(SEQ),
            {},
        ),
        (
            "jbossws-native__terminateSequenceResponse.xml",
            "TerminateSequenceResponse",
            TerminateSequenceResponse(SEQ),
            {},
        ),
        (
            "jbossws-native__sequenceAckResponse.xml",
            "SequenceAcknowledgement",
            None,
            {"acknowledgements": (SequenceAcknowledgement(SEQ, (AckRange(1, 4),)),)},
        ),
    ],
)
def test_filled_in_jboss_template_decodes(
    samples: Path, name: str, action: str, body: object, headers: dict[str, object]
) -> None:
    text = (samples / name).read_text()
    for placeholder, value in {**FILLED, "${res.wsa.action}": f"{RM11}/{action}"}.items():
        text = text.replace(placeholder, value)
    envelope = codec.decode(text.encode())
    assert envelope == Envelope(
        action=f"{RM11}/{action}",
        to=FILLED["${res.wsa.to}"],
        relates_to=FILLED["${res.wsa.relatesto}"],
        body=body,  # type: ignore[arg-type]
        **headers,  # type: ignore[arg-type]
    )
    _reencoded_is_valid(envelope, V11)


def test_filled_in_jboss_echo_response_carries_three_rm_headers(samples: Path) -> None:
    text = (samples / "jbossws-native__echoResponse.xml").read_text()
    for placeholder, value in {**FILLED, "${res.wsa.action}": "urn:echo"}.items():
        text = text.replace(placeholder, value)
    envelope = codec.decode(text.encode())
    assert envelope.sequence == Sequence("http://sequence/id/inbound/456", 5)
    assert envelope.ack_requested == (AckRequested("http://sequence/id/inbound/456"),)
    assert envelope.acknowledgements == (SequenceAcknowledgement(SEQ, (AckRange(5, 5),)),)
    assert envelope.body == Payload(
        b'<ns1:echoResponse xmlns:ns1="http://org.jboss.ws/jaxws/wsrm">\n'
        b"   <result>Hello World</result>\n  </ns1:echoResponse>"
    )
    _reencoded_is_valid(envelope, V11)


def test_wrapped_metro_terminate_sequence_decodes(samples: Path) -> None:
    fragment = (samples / "metro-wsit__RM_1.1_TerminateSequence.xml").read_bytes()
    element = fragment.split(b"-->", 1)[1].strip()
    document = (
        (
            f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header>'
            f"<a:Action>{RM11}/TerminateSequence</a:Action></s:Header><s:Body>"
        ).encode()
        + element
        + b"</s:Body></s:Envelope>"
    )
    envelope = codec.decode(document)
    assert envelope.body == TerminateSequence("uuid:839aabc1-fcfd-4402-9f88-0462c01a01ed", 3)
