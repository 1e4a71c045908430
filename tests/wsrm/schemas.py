"""Validate envelopes against the official schemas in ``tests/wsrm/data/xsd`` (offline).

Each header block and WS-RM body child is validated against its own schema, the envelope
against SOAP 1.2's (application payloads are the application's and are left out).

February 2005 messages carry WS-Addressing 1.0 endpoint references (as WCF writes them) where
``wsrm.xsd`` expects WS-Addressing 2004/08 ones (``xsd/SOURCES.md``): such an EPR is validated
against WS-Addressing 1.0 on its own, then the RM element is validated with the EPR's children
moved to the 2004/08 namespace. Nothing is skipped.
"""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path

from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA10 = "http://www.w3.org/2005/08/addressing"
WSA200408 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
RM11 = "http://docs.oasis-open.org/ws-rx/wsrm/200702"
RM2005 = "http://schemas.xmlsoap.org/ws/2005/02/rm"
NETRM = "http://schemas.microsoft.com/ws/2006/05/rm"


def shared_dir() -> Path:
    """The official schemas and sample messages (``tests/wsrm/data``; ``DS_SHARED_DIR`` overrides).

    ``data/`` holds unchanged copies of the schemas and wire samples, with ``SOURCES.md`` files
    that say where each came from.
    """
    default = Path(__file__).resolve().parent / "data"
    path = Path(os.environ.get("DS_SHARED_DIR", default))
    if not (path / "xsd").is_dir():
        raise RuntimeError(f"schemas and samples not found at {path}; set DS_SHARED_DIR")
    return path


_REMOTE = {
    "http://www.w3.org/2006/03/addressing/ws-addr.xsd": "ws-addr.xsd",
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "http://schemas.xmlsoap.org/ws/2004/08/addressing": "addressing.xsd",
}


class _LocalSchemas(etree.Resolver):
    def resolve(self, system_url: str | None, public_id: str | None, context: object):  # type: ignore[no-untyped-def]
        if system_url in _REMOTE:
            return self.resolve_filename(str(shared_dir() / "xsd" / _REMOTE[system_url]), context)
        return None


@cache
def schema(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalSchemas())
    return etree.XMLSchema(etree.parse(str(shared_dir() / "xsd" / name), parser))


SCHEMAS = {
    SOAP12: "soap12-envelope.xsd",
    WSA10: "ws-addr.xsd",
    RM11: "wsrm-1.1-schema-200702.xsd",
    RM2005: "wsrm.xsd",
}


def _check(name: str, element: etree._Element) -> None:
    standalone = copy.deepcopy(element)
    compiled = schema(name)
    if not compiled.validate(standalone):
        raise AssertionError(
            f"{etree.QName(element).localname} is invalid against {name}: "
            f"{compiled.error_log.last_error}\n{etree.tostring(element).decode()}"
        )


def _epr_children_to_2004(element: etree._Element) -> None:
    for epr in element.iter(f"{{{RM2005}}}AcksTo", f"{{{RM2005}}}Endpoint"):
        wrapped = etree.Element(f"{{{WSA10}}}EndpointReference")
        wrapped.extend(copy.deepcopy(list(epr)))
        _check("ws-addr.xsd", wrapped)  # the EPR itself, against WS-Addressing 1.0
        for child in epr.iter():
            qname = etree.QName(child)
            if qname.namespace == WSA10:
                child.tag = f"{{{WSA200408}}}{qname.localname}"


def _check_rm(element: etree._Element) -> None:
    namespace = etree.QName(element).namespace or ""
    if namespace == RM2005:
        element = copy.deepcopy(element)
        _epr_children_to_2004(element)
    if namespace == RM11 and etree.QName(element).localname == "MaxMessageNumber":
        # A fault detail the 1.1 specification defines but its schema does not declare.
        assert (element.text or "").isdigit()
        return
    _check(SCHEMAS[namespace], element)


def validate(document: bytes) -> etree._Element:
    """Validate a whole envelope and each of its parts; return the parsed root."""
    root = etree.fromstring(document, etree.XMLParser(no_network=True, resolve_entities=False))
    header, body = root.find(f"{{{SOAP12}}}Header"), root.find(f"{{{SOAP12}}}Body")
    assert body is not None
    # The SOAP schema checks body content laxly, but an application payload may use types whose
    # schemas we do not have (e.g. xsi:type="soapenc:string"): check the envelope without it.
    structure = copy.deepcopy(root)
    structure_body = structure.find(f"{{{SOAP12}}}Body")
    assert structure_body is not None
    for child in list(structure_body):
        if etree.QName(child).namespace not in (SOAP12, RM11, RM2005):
            structure_body.remove(child)
    _check("soap12-envelope.xsd", structure)
    for block in [*(header if header is not None else []), *body]:
        namespace = etree.QName(block).namespace
        if namespace == WSA10:
            _check("ws-addr.xsd", block)
        elif namespace in (RM11, RM2005):
            _check_rm(block)
        elif namespace == SOAP12:  # a Fault: its RM detail too
            for detail in block.iterfind(f"{{{SOAP12}}}Detail/*"):
                _check_rm(detail)
    return root
