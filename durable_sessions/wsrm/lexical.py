"""XML Schema lexical checks the protocol needs: xs:anyURI, absolute URIs, xs:duration.

Values that pass them are values the schemas accept, so what the codec reads it can also write.
"""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?", re.ASCII
)


def is_duration(text: str) -> bool:
    """Whether ``text`` is an xs:duration (the type of ``wsrm:Expires``), e.g. ``PT10M``."""
    return _DURATION.fullmatch(text) is not None


# RFC 3986 URI-reference, the way libxml2 checks xs:anyURI: characters URIs may not hold
# (space, non-ASCII, <>"{}|\^`') count as ordinary ones, a port needs a digit, a fragment
# may hold brackets. The tests compare this with libxml2 itself.
_PCT = r"%[0-9A-Fa-f]{2}"
_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;="  # unreserved and sub-delims
_PCHAR = rf"(?:[{_CHARS}:@]|{_PCT})"
_PATH = rf"(?:/{_PCHAR}*)*"
_AUTHORITY = rf"(?:(?:[{_CHARS}:]|{_PCT})*@)?(?:\[[^\]]*\]|(?:[{_CHARS}]|{_PCT})*)(?::[0-9]+)?"
_FIRST_SEGMENT = rf"(?:[{_CHARS}@]|{_PCT})+"  # a relative path's first segment has no colon
_URI_REFERENCE = re.compile(
    rf"(?:[A-Za-z][A-Za-z0-9+.-]*:(?://{_AUTHORITY}{_PATH}|/(?:{_PCHAR}+{_PATH})?|{_PCHAR}+{_PATH}|)"
    rf"|(?://{_AUTHORITY}{_PATH}|/(?:{_PCHAR}+{_PATH})?|{_FIRST_SEGMENT}{_PATH}|))"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?\[\]])*)?",
    re.ASCII,
)
_NOT_URI_CHARACTER = re.compile(r"[^\x21-\x7e]|[<>\"{}|\\^`']")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:", re.ASCII)


def is_any_uri(text: str) -> bool:
    """Whether ``text`` is an xs:anyURI as schema validation accepts it (identifiers, actions,
    message ids); whitespace is expected collapsed already."""
    return _URI_REFERENCE.fullmatch(_NOT_URI_CHARACTER.sub("_", text)) is not None


def is_absolute_uri(text: str) -> bool:
    """Whether ``text`` is an absolute URI without whitespace, as WS-Addressing requires of
    ``To`` and of endpoint reference addresses."""
    return (
        _SCHEME.match(text) is not None
        and not any(c.isspace() for c in text)
        and (is_any_uri(text))
    )
