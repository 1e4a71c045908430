"""How an operation call and its reply travel in a SOAP body (the reliable-session body format).

A call is one element in the :data:`CALL_NAMESPACE` named after the operation, with one child
element per argument whose text is the argument as JSON::

    <add_to xmlns="urn:durable-sessions:call"><n>5</n></add_to>

The reply to a two-way call is ``<{operation}Response>`` holding ``<result>`` (JSON) or, when
the service failed, ``<error>`` (text)::

    <equalsResponse xmlns="urn:durable-sessions:call"><result>15.0</result></equalsResponse>

Only the body names the operation; the WS-Addressing action is :func:`call_action` by
convention. :data:`CALL_FORMAT` reads and writes this format; other formats implement
:class:`CallFormat` too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from durable_sessions.errors import MessageRejected
from durable_sessions.model.records import JSON
from durable_sessions.wsrm.errors import EncodeError, EnvelopeRejected
from durable_sessions.wsrm.messages import Payload
from durable_sessions.wsrm.xml.elements import Element, read_payload, write_payload

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


_RESPONSE = "Response"


class XmlCallFormat:
    """:class:`CallFormat` for the body format of this module's docstring."""

    def write_call(self, call: Call) -> Payload:
        """The body payload of ``call``."""
        fields = tuple(_field(name, json.dumps(value)) for name, value in call.args.items())
        return _written(Element(CALL_NAMESPACE, call.operation, children=fields))

    def read_call(self, payload: Payload) -> Call:
        """The call a body payload holds."""
        root = _root(payload)
        return Call(root.name, _fields(root))

    def write_reply(self, reply: Reply) -> Payload:
        """The body payload of ``reply``."""
        outcome = (
            _field("result", json.dumps(reply.result))
            if reply.error is None
            else _field("error", reply.error)
        )
        return _written(Element(CALL_NAMESPACE, reply.operation + _RESPONSE, children=(outcome,)))

    def read_reply(self, payload: Payload) -> Reply:
        """The reply a body payload holds."""
        root = _root(payload)
        if not root.name.endswith(_RESPONSE) or len(root.children) != 1:
            raise MessageRejected("a reply is <{operation}Response> with <result> or <error>")
        operation = root.name.removesuffix(_RESPONSE)
        child = root.children[0]
        if (child.namespace, child.name) == (CALL_NAMESPACE, "error"):
            return Reply(operation, error=child.text or "")
        return Reply(operation, result=_fields(root).get("result"))


CALL_FORMAT = XmlCallFormat()
"""Operation calls and replies in SOAP bodies, as this module's docstring says."""


def _field(name: str, text: str) -> Element:
    return Element(CALL_NAMESPACE, name, text)


def _written(root: Element) -> Payload:
    try:
        return write_payload(root)
    except EncodeError as error:
        raise MessageRejected(str(error)) from error


def _root(payload: Payload) -> Element:
    try:
        found = read_payload(payload)
    except EnvelopeRejected as error:
        raise MessageRejected(str(error)) from error
    if len(found) != 1:
        raise MessageRejected("the body must hold exactly one operation element")
    root = found[0]
    if root.namespace != CALL_NAMESPACE:
        raise MessageRejected(
            f"the operation element must be in the namespace {CALL_NAMESPACE!r}, "
            f"not {root.namespace!r}"
        )
    return root


def _fields(root: Element) -> dict[str, JSON]:
    values: dict[str, JSON] = {}
    for child in root.children:
        if child.namespace != CALL_NAMESPACE or child.name in values or child.children:
            raise MessageRejected(
                f"argument element {child.name!r} must be a text-only child in "
                f"{CALL_NAMESPACE!r}, given once"
            )
        try:
            values[child.name] = json.loads(child.text or "")
        except ValueError as error:
            raise MessageRejected(f"argument {child.name!r} is not JSON: {error}") from error
    return values
