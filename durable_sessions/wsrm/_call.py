"""The reliable-session body format (:mod:`durable_sessions.reliable.calls`) in lxml."""

from __future__ import annotations

import json

from lxml import etree

from durable_sessions.errors import MessageRejected
from durable_sessions.records import JSON
from durable_sessions.reliable.calls import CALL_NAMESPACE, Call, Reply
from durable_sessions.wsrm._xml import (
    DEFAULT_LIMITS,
    canonical,
    elements,
    local_name,
    payload_elements,
)
from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import Payload

_RESPONSE = "Response"


def _element(name: str) -> etree._Element:
    try:
        return etree.Element(etree.QName(CALL_NAMESPACE, name), nsmap={None: CALL_NAMESPACE})
    except ValueError as error:
        raise MessageRejected(f"{name!r} cannot be an XML element name") from error


def _child(parent: etree._Element, name: str, text: str) -> None:
    try:
        child = etree.SubElement(parent, etree.QName(CALL_NAMESPACE, name))
        child.text = text
    except ValueError as error:
        raise MessageRejected(f"{name!r} cannot be written in XML: {error}") from error


def _root(payload: Payload) -> tuple[str, etree._Element]:
    try:
        found = payload_elements(payload.xml, DEFAULT_LIMITS)
    except EnvelopeRejected as error:
        raise MessageRejected(str(error)) from error
    if len(found) != 1:
        raise MessageRejected("the body must hold exactly one operation element")
    namespace, name = local_name(found[0])
    if namespace != CALL_NAMESPACE:
        raise MessageRejected(
            f"the operation element must be in the namespace {CALL_NAMESPACE!r}, not {namespace!r}"
        )
    return name, found[0]


def _fields(root: etree._Element) -> dict[str, JSON]:
    values: dict[str, JSON] = {}
    for child in elements(root):
        namespace, name = local_name(child)
        if namespace != CALL_NAMESPACE or name in values or len(child):
            raise MessageRejected(
                f"argument element {name!r} must be a text-only child in {CALL_NAMESPACE!r}, "
                "given once"
            )
        try:
            values[name] = json.loads(child.text or "")
        except ValueError as error:
            raise MessageRejected(f"argument {name!r} is not JSON: {error}") from error
    return values


class XmlCallFormat:
    """:class:`~durable_sessions.reliable.calls.CallFormat` with lxml."""

    def write_call(self, call: Call) -> Payload:
        """The body payload of ``call``."""
        root = _element(call.operation)
        for name, value in call.args.items():
            _child(root, name, json.dumps(value))
        return Payload(canonical([root]))

    def read_call(self, payload: Payload) -> Call:
        """The call a body payload holds."""
        name, root = _root(payload)
        return Call(name, _fields(root))

    def write_reply(self, reply: Reply) -> Payload:
        """The body payload of ``reply``."""
        root = _element(reply.operation + _RESPONSE)
        if reply.error is None:
            _child(root, "result", json.dumps(reply.result))
        else:
            _child(root, "error", reply.error)
        return Payload(canonical([root]))

    def read_reply(self, payload: Payload) -> Reply:
        """The reply a body payload holds."""
        name, root = _root(payload)
        if not name.endswith(_RESPONSE) or len(elements(root)) != 1:
            raise MessageRejected("a reply is <{operation}Response> with <result> or <error>")
        operation = name.removesuffix(_RESPONSE)
        child = elements(root)[0]
        if local_name(child) == (CALL_NAMESPACE, "error"):
            return Reply(operation, error=child.text or "")
        return Reply(operation, result=_fields(root).get("result"))
