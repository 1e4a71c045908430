"""Hypothesis strategies for WS-RM values that a given RM version can express."""

from __future__ import annotations

import re

from hypothesis import strategies as st
from lxml import etree

from durable_sessions.wsrm.faults import fault_action
from durable_sessions.wsrm.lexical import is_any_uri
from durable_sessions.wsrm.messages import (
    MAX_MESSAGE_NUMBER,
    NETRM_NAMESPACE,
    Accept,
    AckRange,
    AckRequested,
    AddressingFaultCode,
    Body,
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
    QName,
    RMBody,
    RMFaultCode,
    RMVersion,
    Sequence,
    SequenceAcknowledgement,
    Subcode,
    TerminateSequence,
    TerminateSequenceResponse,
    action_uri,
    body_action,
)
from durable_sessions.wsrm.xml import codec

V11 = RMVersion.WSRM_1_1
V2005 = RMVersion.WSRM_2005_02

uris = st.from_regex(
    r"(urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}|https?://[a-z][a-z0-9.]{0,12}(:[0-9]{2,5})?(/[A-Za-z0-9._~-]{0,8}){0,3})",
    fullmatch=True,
)
"""URI-shaped strings (what schema validation expects)."""

_TEXT = st.characters(categories=("L", "M", "N", "P", "S", "Zs"), exclude_characters="\u2028\u2029")
texts = st.text(_TEXT, max_size=30).map(lambda s: re.sub(" +", " ", s).strip(" "))
"""Unicode text as XML Schema's whitespace collapse leaves it."""

unicode_uris = texts.filter(is_any_uri)
"""Unicode identifiers that are still xs:anyURI (non-ASCII, spaces and most punctuation)."""

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True)
numbers = st.integers(1, MAX_MESSAGE_NUMBER)
durations = st.from_regex(
    r"P([0-9]{1,3}Y)?([0-9]{1,2}M)?([0-9]{1,2}D)?T[0-9]{1,5}(\.[0-9]{1,3})?S", fullmatch=True
)
eprs = st.builds(EndpointReference, uris)


@st.composite
def payloads(draw: st.DrawFn) -> Payload:
    """Application bodies: one or two small elements, namespaces, attributes and text."""
    roots = []
    for _ in range(draw(st.integers(1, 2))):
        namespace = draw(st.sampled_from([None, "urn:test:a", "http://example.org/b"]))
        root = etree.Element(f"{{{namespace}}}{draw(names)}" if namespace else draw(names))
        for _ in range(draw(st.integers(0, 3))):
            child = etree.SubElement(root, draw(names))
            child.text = draw(texts)
            if draw(st.booleans()):
                child.set(draw(names), draw(texts))
        roots.append(etree.tostring(root))
    return codec.make_payload(b"".join(roots))


def ack_ranges() -> st.SearchStrategy[AckRange]:
    return st.tuples(numbers, numbers).map(lambda pair: AckRange(min(pair), max(pair)))


@st.composite
def acknowledgements(
    draw: st.DrawFn, version: RMVersion, identifiers: st.SearchStrategy[str]
) -> SequenceAcknowledgement:
    kind = draw(st.sampled_from(["ranges", "none", "nacks"]))
    ranges = tuple(draw(st.lists(ack_ranges(), min_size=1, max_size=4))) if kind == "ranges" else ()
    nacks = tuple(draw(st.lists(numbers, min_size=1, max_size=3))) if kind == "nacks" else ()
    final = version is V11 and kind != "nacks" and draw(st.booleans())
    remaining = draw(st.none() | st.integers(0, 2**31 - 1))
    return SequenceAcknowledgement(draw(identifiers), ranges, nacks, final, remaining)


_ONLY = {
    RMFaultCode.SEQUENCE_CLOSED: V11,
    RMFaultCode.WSRM_REQUIRED: V11,
    RMFaultCode.LAST_MESSAGE_NUMBER_EXCEEDED: V2005,
}
_KNOWN = {v.value for v in RMVersion} | {
    NETRM_NAMESPACE,
    codec.AddressingVersion.WSA_1_0.value,
    codec.AddressingVersion.WSA_2004_08.value,
    "http://www.w3.org/XML/1998/namespace",
}


def subcodes(version: RMVersion) -> st.SearchStrategy[Subcode]:
    rm = st.sampled_from([c for c in RMFaultCode if _ONLY.get(c, version) is version])
    foreign = st.builds(QName, uris.filter(lambda u: u not in _KNOWN), names)
    return st.one_of(
        rm,
        st.sampled_from(list(NetRMFaultCode)),
        st.sampled_from(list(AddressingFaultCode)),
        foreign,
    )


@st.composite
def fault_values(draw: st.DrawFn, version: RMVersion, identifiers: st.SearchStrategy[str]) -> Fault:
    ack = draw(st.none() | acknowledgements(version, identifiers))
    identifier = ack.identifier if ack is not None else draw(st.none() | identifiers)
    return Fault(
        draw(st.sampled_from(list(FaultCode))),
        draw(texts),
        tuple(draw(st.lists(subcodes(version), max_size=3))),
        identifier,
        ack,
    )


@st.composite
def rm_bodies(draw: st.DrawFn, version: RMVersion, identifiers: st.SearchStrategy[str]) -> RMBody:
    v11 = version is V11
    behaviors = st.none() | st.sampled_from(list(IncompleteSequenceBehavior)) if v11 else st.none()
    last = st.none() | numbers if v11 else st.none()
    offers = st.builds(
        Offer, identifiers, eprs if v11 else st.none(), st.none() | durations, behaviors
    )
    kinds: list[st.SearchStrategy[RMBody]] = [
        st.builds(CreateSequence, eprs, st.none() | durations, st.none() | offers),
        st.builds(
            CreateSequenceResponse,
            identifiers,
            st.none() | durations,
            behaviors,
            st.none() | st.builds(Accept, eprs),
        ),
        st.builds(TerminateSequence, identifiers, last),
    ]
    if v11:
        kinds += [
            st.builds(CloseSequence, identifiers, last),
            st.builds(CloseSequenceResponse, identifiers),
            st.builds(TerminateSequenceResponse, identifiers),
        ]
    return draw(st.one_of(kinds))


@st.composite
def envelopes(
    draw: st.DrawFn, version: RMVersion, identifiers: st.SearchStrategy[str] = uris
) -> Envelope:
    """Envelopes ``version`` can carry and that decode back to themselves."""
    body: Body = draw(
        st.one_of(
            st.none(),
            payloads(),
            rm_bodies(version, identifiers),
            fault_values(version, identifiers),
        )
    )
    if isinstance(body, RMBody):
        action = action_uri(body_action(body), version)
    elif isinstance(body, Fault) and draw(st.booleans()):
        action = fault_action(body, version)
    else:
        action = "urn:app:" + draw(names)
    sequence = draw(
        st.none()
        | st.builds(
            Sequence, identifiers, numbers, st.booleans() if version is V2005 else st.just(False)
        )
    )
    return Envelope(
        action=action,
        body=body,
        to=draw(st.none() | uris),
        message_id=draw(st.none() | uris),
        relates_to=draw(st.none() | uris),
        reply_to=draw(st.none() | eprs),
        fault_to=draw(st.none() | eprs),
        sequence=sequence,
        ack_requested=tuple(draw(st.lists(st.builds(AckRequested, identifiers), max_size=2))),
        acknowledgements=tuple(draw(st.lists(acknowledgements(version, identifiers), max_size=2))),
    )
