"""Standard faults: WCF's texts, codes and the actions they travel with."""

from __future__ import annotations

import pytest

from durable_sessions.wsrm import faults
from durable_sessions.wsrm.messages import (
    WSA_ANONYMOUS,
    WSA_FAULT_ACTION,
    WSA_SOAP_FAULT_ACTION,
    AddressingFaultCode,
    EndpointReference,
    Envelope,
    Fault,
    FaultCode,
    QName,
    RMAction,
    RMFaultCode,
    RMVersion,
    SequenceAcknowledgement,
    action_uri,
    exists_in,
    parse_action,
    reply_address,
)
from durable_sessions.wsrm.xml import codec
from tests.wsrm.schemas import validate


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (600, "00:10:00"),
        (0.2, "00:00:00.2000000"),
        (1.5, "00:00:01.5000000"),
        (86_400 + 3_661, "1.01:01:01"),
        (-30, "-00:00:30"),
    ],
)
def test_timespan_prints_like_dotnet(seconds: float, text: str) -> None:
    assert faults.timespan(seconds) == text


def test_wcf_reason_texts() -> None:
    inactivity = faults.inactivity_timeout_exceeded("urn:s", 600)
    assert inactivity.reason == "The inactivity timeout of (00:10:00) has been exceeded."
    assert (inactivity.code, inactivity.rm_code) == (
        FaultCode.RECEIVER,
        RMFaultCode.SEQUENCE_TERMINATED,
    )
    assert faults.max_retry_count_exceeded("urn:s").reason.startswith(
        "The user specified maximum retry count for a particular message has been exceeded."
    )
    busy = faults.connection_limit_reached("http://host/svc")
    assert (
        busy.reason
        == "Server 'http://host/svc' is too busy to process this request. Try again later."
    )
    assert (
        faults.sequence_closed("s").reason
        == "The Sequence is closed and cannot accept new messages."
    )
    assert (
        faults.user_abort("s").reason == "Due to a user abort the reliable session cannot continue."
    )


def test_fault_actions_follow_the_version() -> None:
    rm = faults.unknown_sequence("s")
    assert faults.fault_action(rm, RMVersion.WSRM_1_1) == f"{RMVersion.WSRM_1_1.value}/fault"
    assert faults.fault_action(rm, RMVersion.WSRM_2005_02) == WSA_SOAP_FAULT_ACTION
    addressing = Fault(FaultCode.SENDER, "x", (AddressingFaultCode.ACTION_NOT_SUPPORTED,))
    assert faults.fault_action(addressing, RMVersion.WSRM_1_1) == WSA_FAULT_ACTION
    assert faults.fault_action(Fault(FaultCode.RECEIVER, "x"), RMVersion.WSRM_1_1) == (
        WSA_SOAP_FAULT_ACTION
    )


def test_wcf_dispatcher_faults_for_refused_calls() -> None:
    """WCF's ActionNotSupported and SessionTerminated: codes, texts and actions."""
    refused = faults.action_not_supported("urn:app/launch")
    assert (refused.code, refused.subcodes) == (
        FaultCode.SENDER,
        (AddressingFaultCode.ACTION_NOT_SUPPORTED,),
    )
    assert refused.reason.startswith(
        "The message with Action 'urn:app/launch' cannot be processed at the receiver, due to a "
        "ContractFilter mismatch at the EndpointDispatcher. This may be because"
    )
    assert faults.fault_action(refused, RMVersion.WSRM_2005_02) == WSA_FAULT_ACTION
    ended = faults.session_terminated()
    dispatcher = (
        "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"
    )
    assert (ended.code, ended.subcodes) == (
        FaultCode.SENDER,
        (QName(dispatcher, "SessionTerminated"),),
    )
    assert ended.reason.startswith(
        "An operation marked as IsTerminating has already been invoked on this channel"
    )
    for version in RMVersion:
        assert faults.fault_action(ended, version) == f"{dispatcher}/fault"


def test_reply_address_prefers_fault_to_then_reply_to() -> None:
    request = Envelope("urn:x", reply_to=EndpointReference("http://r"))
    assert reply_address(request) == "http://r"
    assert reply_address(request, fault=True) == "http://r"
    with_fault_to = Envelope(
        "urn:x", reply_to=EndpointReference("http://r"), fault_to=EndpointReference("http://f")
    )
    assert reply_address(with_fault_to, fault=True) == "http://f"
    assert reply_address(Envelope("urn:x")) == WSA_ANONYMOUS


def test_actions_exist_only_in_their_version() -> None:
    v11, v2005 = RMVersion.WSRM_1_1, RMVersion.WSRM_2005_02
    assert action_uri(RMAction.CLOSE_SEQUENCE, v11).endswith("/200702/CloseSequence")
    assert not exists_in(RMAction.CLOSE_SEQUENCE, v2005)
    assert not exists_in(RMAction.LAST_MESSAGE, v11)
    with pytest.raises(ValueError, match="WS-RM February 2005 has no CloseSequence action"):
        action_uri(RMAction.CLOSE_SEQUENCE, v2005)
    assert parse_action(f"{v2005.value}/LastMessage") == (v2005, RMAction.LAST_MESSAGE)
    assert parse_action(f"{v11.value}/LastMessage") is None
    assert parse_action("urn:app:op") is None


@pytest.mark.parametrize("version", list(RMVersion))
def test_every_standard_fault_is_a_valid_envelope(version: RMVersion) -> None:
    made = [
        faults.sequence_terminated("urn:s", "why", sender=True),
        faults.inactivity_timeout_exceeded("urn:s", 600),
        faults.max_retry_count_exceeded("urn:s"),
        faults.user_abort("urn:s"),
        faults.unknown_sequence("urn:s"),
        faults.invalid_acknowledgement(SequenceAcknowledgement("urn:s")),
        faults.message_number_rollover("urn:s"),
        faults.create_sequence_refused(),
        faults.connection_limit_reached("http://host/svc"),
        faults.action_not_supported("urn:app/op"),
        faults.session_terminated(),
    ]
    if version is RMVersion.WSRM_1_1:
        made += [faults.sequence_closed("urn:s"), faults.wsrm_required()]
    else:
        made += [faults.last_message_number_exceeded("urn:s")]
    for fault in made:
        document = codec.encode_fault(fault, version, to="http://peer", relates_to="urn:m")
        validate(document)
        envelope = codec.decode(document)
        assert envelope.body == fault
        assert envelope.action == faults.fault_action(fault, version)
    refused = faults.create_sequence_refused()
    assert (refused.code, refused.subcodes) == (
        FaultCode.SENDER,
        (RMFaultCode.CREATE_SEQUENCE_REFUSED,),
    )
