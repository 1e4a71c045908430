"""Bearer credentials of the control plane: their formats, digests and the key file.

Three kinds, told apart by how they begin:

- a stored key, ``dsk_`` and 43 random characters: kept in the database as its SHA-256 and its
  first :data:`PREFIX_LENGTH` characters (the prefix, not secret, how it is looked up);
- a session token, ``dst_<session id>_`` and 43 random characters: kept as its SHA-256 on the
  session it is bound to;
- anything else: a configured admin key, from ``DS_API_KEYS`` or the 0600 file ``up`` writes.

Every secret is 32 random bytes, so one SHA-256 is enough (no slow hash is needed against
guessing); digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from durable_sessions.errors import ConfigurationError
from durable_sessions.settings import Settings

KEY_MARK = "dsk_"
TOKEN_MARK = "dst_"
PREFIX_LENGTH = 16
"""How many leading characters of a stored key are kept in clear: the mark and 72 random bits."""
_SESSION_ID_LENGTH = 36


def digest(secret: str) -> str:
    """The SHA-256 of ``secret``, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def digest_matches(secret: str, expected: str) -> bool:
    """True if ``secret``'s digest is ``expected``, compared in constant time."""
    return hmac.compare_digest(digest(secret), expected)


def new_key() -> str:
    """A new stored key (shown once to whoever creates it)."""
    return KEY_MARK + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str | None:
    """The lookup prefix of a stored key, or None if ``key`` is not one."""
    if not key.startswith(KEY_MARK) or len(key) <= PREFIX_LENGTH:
        return None
    return key[:PREFIX_LENGTH]


def new_session_token(session_id: str) -> str:
    """A new token bound to session ``session_id``."""
    return f"{TOKEN_MARK}{session_id}_{secrets.token_urlsafe(32)}"


def token_session(token: str) -> str | None:
    """The session id a session token names, or None if ``token`` is not one."""
    end = len(TOKEN_MARK) + _SESSION_ID_LENGTH
    if not token.startswith(TOKEN_MARK) or token[end : end + 1] != "_":
        return None
    return token[len(TOKEN_MARK) : end]


def check_key_file(path: Path) -> None:
    """Refuse a key file that its group or other users may read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        who = " and ".join(
            name for bits, name in ((0o070, "its group"), (0o007, "other users")) if mode & bits
        )
        raise ConfigurationError(
            f"the API key file {path} has mode {mode:04o}: {who} can read or change it; "
            f"run `chmod 600 {path}`"
        )


def load_api_keys(settings: Settings) -> list[str]:
    """The keys from ``DS_API_KEYS`` plus those in ``DS_API_KEYS_FILE`` when it exists."""
    keys = settings.api_key_list()
    path = Path(settings.api_keys_file)
    if path.is_file():
        check_key_file(path)
        keys += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return keys


def ensure_api_key(path: Path) -> tuple[str, bool]:
    """The first key in ``path``, generating one (file mode 0600) if there is none.

    Returns the key and whether it was just created.
    """
    if path.is_file():
        check_key_file(path)
        for line in path.read_text().splitlines():
            if line.strip():
                return line.strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    return key, True


def key_matches(given: str, keys: Sequence[str]) -> bool:
    """True if ``given`` is one of ``keys``, compared in constant time."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.encode())
    return matched
