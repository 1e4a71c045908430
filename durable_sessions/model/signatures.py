"""The security session: per-session keys, the signed form of a message and ``DS-Signature``.

WCF's security session agrees a key when the session starts and signs every message with it,
refusing replays and messages outside ``MaxClockSkew``. Here the key is derived, not agreed:
HKDF-SHA256 (RFC 5869) of the server secret and the session id, handed once to the opener.
A send then carries ``DS-Signature: t=<unix seconds>,n=<nonce>,s=<base64 HMAC-SHA256>`` over
:func:`canonical_form`. Pure functions only: the store keeps the nonces seen, the control plane
refuses before it stores anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from durable_sessions.errors import SignatureRefused

HEADER = "DS-Signature"
"""The HTTP header (and, over SOAP, the header element's local name) carrying a signature."""
MAX_CLOCK_SKEW_S = 300.0
"""WCF's ``MaxClockSkew`` default: five minutes either way."""
MAX_HEADER_LENGTH = 200
_KEY_INFO = b"durable-sessions session key v1|"
_FORM_TAG = "DS-Signature-v1"
_HEADER_RE = re.compile(
    r"t=(?P<t>[0-9]{1,12}),n=(?P<n>[A-Za-z0-9_-]{16,64}),s=(?P<s>[A-Za-z0-9+/]{43}=)", re.ASCII
)


class Security(StrEnum):
    """What a contract or endpoint requires of its messages (WCF ``SecurityMode``, in part)."""

    NONE = "none"
    """Bearer credentials only (use HTTPS on the network)."""
    MESSAGE = "message"
    """The security session: every message signed with the session's key."""


def hkdf_sha256(secret: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF with SHA-256 (RFC 5869): extract with ``salt``, expand with ``info``."""
    prk = hmac.new(salt or bytes(32), secret, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def session_key(server_secret: bytes, session_id: str) -> bytes:
    """The 32-byte key of session ``session_id``: HKDF-SHA256(secret, info=tag | session id)."""
    return hkdf_sha256(server_secret, b"", _KEY_INFO + session_id.encode())


def canonical_json(args: Mapping[str, Any]) -> str:
    """``args`` with sorted keys, no spaces, non-ASCII kept as is (encoded UTF-8 when signed)."""
    return json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_form(
    session_id: str, message_id: str, operation: str, args: Mapping[str, Any], t: int, n: str
) -> bytes:
    """The bytes signed: seven lines joined by ``\\n``, UTF-8, no trailing newline."""
    lines = [_FORM_TAG, session_id, message_id, operation, canonical_json(args), str(t), n]
    return "\n".join(lines).encode()


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed ``DS-Signature``: time ``t`` (unix seconds), nonce ``n``, MAC ``s``."""

    t: int
    n: str
    s: bytes

    def header(self) -> str:
        """The header value."""
        return f"t={self.t},n={self.n},s={base64.b64encode(self.s).decode()}"


def parse(value: str | None) -> Signature:
    """Parse a header value strictly; anything else is a :class:`SignatureRefused`."""
    if value is None or value == "":
        raise SignatureRefused("missing", f"this session requires message security: send {HEADER}")
    if len(value) > MAX_HEADER_LENGTH:
        raise SignatureRefused("malformed", f"{HEADER} is longer than {MAX_HEADER_LENGTH}")
    found = _HEADER_RE.fullmatch(value)
    if found is None:
        raise SignatureRefused(
            "malformed", f"{HEADER} must be t=<unix seconds>,n=<nonce>,s=<base64 HMAC-SHA256>"
        )
    mac = base64.b64decode(found["s"])
    if base64.b64encode(mac).decode() != found["s"]:
        # Unused low bits set: another spelling of the same MAC, refused so each has one.
        raise SignatureRefused("malformed", f"{HEADER} s= is not canonical base64")
    return Signature(int(found["t"]), found["n"], mac)


def sign(
    key: bytes,
    session_id: str,
    message_id: str,
    operation: str,
    args: Mapping[str, Any],
    now: float,
    nonce: str | None = None,
) -> Signature:
    """Sign one message at unix time ``now`` with a fresh nonce (unless one is given)."""
    t = int(now)
    n = nonce or secrets.token_urlsafe(18)
    form = canonical_form(session_id, message_id, operation, args, t, n)
    return Signature(t, n, hmac.new(key, form, hashlib.sha256).digest())


def verify(
    key: bytes,
    signature: Signature,
    session_id: str,
    message_id: str,
    operation: str,
    args: Mapping[str, Any],
    now: float,
    max_clock_skew_s: float = MAX_CLOCK_SKEW_S,
) -> None:
    """Refuse a signature that is not this message's under ``key``, or outside the skew."""
    form = canonical_form(session_id, message_id, operation, args, signature.t, signature.n)
    expected = hmac.new(key, form, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature.s):
        raise SignatureRefused("invalid", "the signature does not match this message and session")
    if abs(now - signature.t) > max_clock_skew_s:
        raise SignatureRefused(
            "stale",
            f"the signature's time is {signature.t - now:+.0f} s from the server's, beyond "
            f"MaxClockSkew ({max_clock_skew_s:g} s)",
        )


def encode_key(key: bytes) -> str:
    """A session key as the open response carries it: base64."""
    return base64.b64encode(key).decode()


def decode_key(text: str) -> bytes:
    """A session key from its base64 form."""
    return base64.b64decode(text, validate=True)
