"""Plain element trees for application payloads: a SOAP body's XML as values, and back.

Bindings read and write the bodies they carry through :class:`Element` values, so only this
package touches lxml. An element has a namespace, a local name, text and child elements;
attributes are not kept. Reading uses the codec's hardened parser and its limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from durable_sessions.wsrm.errors import EncodeError
from durable_sessions.wsrm.messages import Payload
from durable_sessions.wsrm.xml.documents import (
    DEFAULT_LIMITS,
    DecodeLimits,
    canonical,
    elements,
    local_name,
    payload_elements,
)


@dataclass(frozen=True, slots=True)
class Element:
    """One XML element of a payload: ``{namespace}name``, its text and its child elements."""

    namespace: str
    name: str
    text: str | None = None
    children: tuple[Element, ...] = ()


def write_payload(root: Element) -> Payload:
    """The payload holding ``root``, whose namespace is declared as the default one.

    Raises :class:`~durable_sessions.wsrm.errors.EncodeError` for a name or a text that XML
    cannot hold.
    """
    try:
        tree = etree.Element(etree.QName(root.namespace, root.name), nsmap={None: root.namespace})
    except ValueError as error:
        raise EncodeError(f"{root.name!r} cannot be an XML element name") from error
    _write_children(tree, root)
    return Payload(canonical([tree]))


def _write_children(tree: etree._Element, element: Element) -> None:
    if element.text is not None:
        _set_text(tree, element.name, element.text)
    for child in element.children:
        try:
            branch = etree.SubElement(tree, etree.QName(child.namespace, child.name))
        except ValueError as error:
            raise EncodeError(f"{child.name!r} cannot be written in XML: {error}") from error
        _write_children(branch, child)


def _set_text(tree: etree._Element, name: str, text: str) -> None:
    try:
        tree.text = text
    except ValueError as error:
        raise EncodeError(f"{name!r} cannot be written in XML: {error}") from error


def read_payload(payload: Payload, limits: DecodeLimits = DEFAULT_LIMITS) -> list[Element]:
    """The elements of ``payload``, read within ``limits``.

    Raises :class:`~durable_sessions.wsrm.errors.EnvelopeRejected` for XML that is not body XML.
    """
    return [_read(element) for element in payload_elements(payload.xml, limits)]


def _read(tree: etree._Element) -> Element:
    namespace, name = local_name(tree)
    return Element(namespace, name, tree.text, tuple(_read(child) for child in elements(tree)))
