"""The lxml codec of WS-RM envelopes and of the payloads they carry.

- :mod:`~durable_sessions.wsrm.xml.codec`: envelopes to SOAP bytes and back.
- :mod:`~durable_sessions.wsrm.xml.elements`: application payloads as plain element trees.
- :mod:`~durable_sessions.wsrm.xml.documents`: namespaces, hardened parsing, canonical XML;
  :mod:`~durable_sessions.wsrm.xml.encode`, :mod:`~durable_sessions.wsrm.xml.decode` and
  :mod:`~durable_sessions.wsrm.xml.decode_rm` write and read the envelopes.

This package is the only place that imports lxml.
"""

from durable_sessions.wsrm.xml.codec import (
    AddressingVersion,
    DecodeLimits,
    Inbound,
    SoapVersion,
    decode,
    decode_message,
    encode,
    encode_fault,
    make_payload,
)
from durable_sessions.wsrm.xml.elements import Element, read_payload, write_payload

__all__ = [
    "AddressingVersion",
    "DecodeLimits",
    "Element",
    "Inbound",
    "SoapVersion",
    "decode",
    "decode_message",
    "encode",
    "encode_fault",
    "make_payload",
    "read_payload",
    "write_payload",
]
