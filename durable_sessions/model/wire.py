"""How a message looks on the broker: a small, versioned JSON document.

The body carries everything needed to apply the message, so a delivery whose inbox row is
missing can still be recorded; decoding is strict and bounded, and a bad body raises
:class:`MalformedMessage` instead of anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from durable_sessions.errors import MessageRejected
from durable_sessions.model.records import JSON, MessageRecord

WIRE_VERSION = 1
MAX_BODY_BYTES = 1 << 20
"""The largest message body accepted (1 MiB)."""

CONTENT_TYPE = "application/json"


class MalformedMessage(MessageRejected):
    """A message body that cannot be decoded or lacks required fields."""


@dataclass(frozen=True, slots=True)
class WireMessage:
    """One operation call as carried by the broker."""

    endpoint: str
    contract: str
    message_id: str
    operation: str
    args: Mapping[str, JSON] = field(default_factory=dict)
    session_id: str | None = None
    seq: int | None = None

    @classmethod
    def of(cls, message: MessageRecord) -> WireMessage:
        """The wire form of a stored message."""
        return cls(
            endpoint=message.endpoint,
            contract=message.contract,
            message_id=message.message_id,
            operation=message.operation,
            args=message.args,
            session_id=message.session_id,
            seq=message.seq,
        )

    def encode(self) -> bytes:
        """The JSON body."""
        document: dict[str, Any] = {
            "v": WIRE_VERSION,
            "endpoint": self.endpoint,
            "contract": self.contract,
            "message_id": self.message_id,
            "operation": self.operation,
            "args": self.args,
        }
        if self.session_id is not None:
            document["session_id"] = self.session_id
            document["seq"] = self.seq
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def decode(cls, body: bytes) -> WireMessage:
        """Parse a body; :class:`MalformedMessage` says what is wrong with a bad one."""
        if len(body) > MAX_BODY_BYTES:
            raise MalformedMessage(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise MalformedMessage(f"body is not JSON: {e}") from None
        if not isinstance(document, dict):
            raise MalformedMessage("body is not a JSON object")
        if document.get("v") != WIRE_VERSION:
            raise MalformedMessage(f"unsupported message version {document.get('v')!r}")
        text = {name: document.get(name) for name in ("endpoint", "contract", "message_id")}
        text["operation"] = document.get("operation")
        for name, value in text.items():
            if not isinstance(value, str) or not value:
                raise MalformedMessage(f"field {name!r} must be a non-empty string")
        args = document.get("args", {})
        if not isinstance(args, dict):
            raise MalformedMessage("field 'args' must be a JSON object")
        session_id, seq = document.get("session_id"), document.get("seq")
        if session_id is not None:
            if not isinstance(session_id, str) or not session_id:
                raise MalformedMessage("field 'session_id' must be a non-empty string")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
                raise MalformedMessage("a session message needs an integer 'seq' >= 1")
        elif seq is not None:
            raise MalformedMessage("'seq' without 'session_id'")
        return cls(
            endpoint=str(text["endpoint"]),
            contract=str(text["contract"]),
            message_id=str(text["message_id"]),
            operation=str(text["operation"]),
            args=args,
            session_id=session_id,
            seq=seq,
        )
