"""The WS-RM envelope codec: values from :mod:`~durable_sessions.wsrm.messages` to bytes and back.

``encode`` always writes SOAP 1.2 with WS-Addressing 1.0, in WS-RM February 2005 or 1.1 (for
February 2005, endpoint references are WS-Addressing 1.0 too, as WCF writes them). ``decode``
reads SOAP 1.1 and 1.2, WS-Addressing 1.0 and 2004/08 and both WS-RM versions, telling them apart
by namespace. Decoding is hardened against hostile input: no DTD, no entity expansion, no network,
bounded size, depth and element count. Anything it refuses raises
:class:`~durable_sessions.wsrm.errors.EnvelopeRejected` with the SOAP fault to send back.

This package (:mod:`~durable_sessions.wsrm.xml`) is the only place that uses lxml.
"""

from __future__ import annotations

from durable_sessions.wsrm.errors import EncodeError, EnvelopeRejected
from durable_sessions.wsrm.faults import fault_envelope
from durable_sessions.wsrm.messages import Envelope, Fault, Payload, RMVersion
from durable_sessions.wsrm.xml.decode import Inbound, read
from durable_sessions.wsrm.xml.documents import (
    DEFAULT_LIMITS,
    AddressingVersion,
    DecodeLimits,
    SoapVersion,
    canonical,
    parse,
    payload_elements,
)
from durable_sessions.wsrm.xml.encode import write

__all__ = [
    "AddressingVersion",
    "DecodeLimits",
    "Inbound",
    "SoapVersion",
    "decode",
    "decode_message",
    "encode",
    "encode_fault",
    "make_payload",
]


def encode(envelope: Envelope, version: RMVersion) -> bytes:
    """Serialize ``envelope`` as a UTF-8 SOAP 1.2 document in WS-RM ``version``.

    Raises :class:`~durable_sessions.wsrm.errors.EncodeError` when the envelope uses something
    ``version`` does not have (CloseSequence or Final in February 2005, LastMessage in 1.1, ...).
    """
    return write(envelope, version)


def encode_fault(
    fault: Fault,
    version: RMVersion,
    *,
    to: str | None = None,
    relates_to: str | None = None,
) -> bytes:
    """Serialize a fault envelope, with the fault action ``version`` (and WCF) use."""
    return write(fault_envelope(fault, version, to=to, relates_to=relates_to), version)


def decode_message(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Inbound:
    """Decode untrusted bytes into an envelope and the SOAP, WS-A and WS-RM versions it used."""
    return read(parse(data, limits))


def decode(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Envelope:
    """Decode untrusted bytes into an :class:`~durable_sessions.wsrm.messages.Envelope`."""
    return decode_message(data, limits=limits).envelope


def make_payload(xml: bytes | str, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Payload:
    """A :class:`~durable_sessions.wsrm.messages.Payload` from body XML (one or more elements).

    The XML is parsed with the same hardening as ``decode`` and stored in canonical form, so two
    payloads are equal exactly when their XML is equivalent. Raises
    :class:`~durable_sessions.wsrm.errors.EncodeError` for anything that is not body XML.
    """
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    try:
        return Payload(canonical(payload_elements(data, limits)))
    except EnvelopeRejected as error:
        raise EncodeError(f"not usable as a SOAP body: {error}") from error
