"""Errors raised by the WS-ReliableMessaging codec and engine.

They extend the project's one exception tree (:mod:`durable_sessions.errors`)::

    ConfigurationError
    └── EncodeError            an envelope cannot be written in the chosen WS-RM version
    MessageRejected
    └── EnvelopeRejected       an inbound envelope is refused; carries the SOAP fault to send back
    SequenceError              the engine refused a request about one WS-RM sequence
    ├── SequenceNotOpen        the sequence is not (or no longer) open for this request
    ├── TransferWindowFull     no room in the transfer window (or the peer's buffer) right now
    └── SequenceExhausted      the sequence has used every message number
    InvalidSnapshot            a persisted sequence state cannot be restored
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sessions.errors import ConfigurationError, DurableSessionsError, MessageRejected

if TYPE_CHECKING:
    from durable_sessions.wsrm.messages import Fault, RMVersion


class EncodeError(ConfigurationError):
    """An envelope holds something its WS-RM version cannot express, or text XML cannot carry."""


class EnvelopeRejected(MessageRejected):
    """An inbound envelope is malformed or unacceptable and was not processed.

    ``fault`` is the SOAP fault to return to the sender; ``rm_version`` is the WS-RM version the
    envelope used (when it could be told) and ``message_id`` its ``wsa:MessageID`` (when it could
    be read), so the reply can be addressed and related.
    """

    def __init__(
        self,
        fault: Fault,
        *,
        rm_version: RMVersion | None = None,
        message_id: str | None = None,
    ) -> None:
        self.fault = fault
        self.rm_version = rm_version
        self.message_id = message_id
        super().__init__(fault.reason)


class SequenceError(DurableSessionsError):
    """The engine refused a request about one WS-RM sequence."""

    def __init__(self, identifier: str | None, message: str) -> None:
        self.identifier = identifier
        super().__init__(message)


class SequenceNotOpen(SequenceError):
    """The sequence is being created, closing or over, and cannot take this request."""

    def __init__(self, identifier: str | None, status: str, request: str) -> None:
        self.status = status
        super().__init__(identifier, f"cannot {request}: sequence {identifier!r} is {status}")


class TransferWindowFull(SequenceError):
    """The transfer window (or the destination's advertised buffer) has no room right now.

    Wait until an acknowledgement frees a slot (``available()`` says how many are free).
    """

    def __init__(self, identifier: str | None) -> None:
        super().__init__(identifier, f"the transfer window of sequence {identifier!r} is full")


class SequenceExhausted(SequenceError):
    """Every message number up to 2^63-1 has been used; start a new sequence."""

    def __init__(self, identifier: str | None) -> None:
        super().__init__(identifier, f"sequence {identifier!r} has no message numbers left")


class InvalidSnapshot(DurableSessionsError, ValueError):
    """A persisted sequence state is not a valid snapshot and cannot be restored."""
