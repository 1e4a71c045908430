"""How an operation call and its reply travel in a SOAP body (the reliable-session body format).

A call is one element in the :data:`CALL_NAMESPACE` named after the operation, with one child
element per argument whose text is the argument as JSON::

    <add_to xmlns="urn:durable-sessions:call"><n>5</n></add_to>

The reply to a two-way call is ``<{operation}Response>`` holding ``<result>`` (JSON) or, when
the service failed, ``<error>`` (text)::

    <equalsResponse xmlns="urn:durable-sessions:call"><result>15.0</result></equalsResponse>

Only the body names the operation; the WS-Addressing action is :func:`call_action` by
convention. The XML itself is read and written by the codec (``codec.CALL_FORMAT``), which
implements :class:`CallFormat`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from durable_sessions.records import JSON
from durable_sessions.wsrm.messages import Payload

CALL_NAMESPACE = "urn:durable-sessions:call"
"""The XML namespace of call and reply elements."""


def call_action(endpoint: str, operation: str) -> str:
    """The WS-Addressing action of a call to ``operation`` on ``endpoint``."""
    return f"{CALL_NAMESPACE}:{endpoint}/{operation}"


def reply_action(endpoint: str, operation: str) -> str:
    """The WS-Addressing action of the reply to a two-way call."""
    return f"{call_action(endpoint, operation)}Response"


@dataclass(frozen=True, slots=True)
class Call:
    """An operation call read from (or to be written in) a SOAP body."""

    operation: str
    args: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """The outcome of a two-way call: its ``result``, or the ``error`` the service raised."""

    operation: str
    result: JSON = None
    error: str | None = None


class CallFormat(Protocol):
    """Reads and writes calls and replies as SOAP body payloads.

    ``read_call``/``read_reply`` raise :class:`~durable_sessions.errors.MessageRejected` for a
    body that is not in the format.
    """

    def write_call(self, call: Call) -> Payload:
        """The body payload of ``call``."""

    def read_call(self, payload: Payload) -> Call:
        """The call a body payload holds."""

    def write_reply(self, reply: Reply) -> Payload:
        """The body payload of ``reply``."""

    def read_reply(self, payload: Payload) -> Reply:
        """The reply a body payload holds."""
