"""Bearer keys of the control plane: from ``DS_API_KEYS``, or a 0600 file ``up`` writes once."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from durable_sessions.settings import Settings


def load_api_keys(settings: Settings) -> list[str]:
    """The keys from ``DS_API_KEYS`` plus those in ``DS_API_KEYS_FILE`` when it exists."""
    keys = settings.api_key_list()
    path = Path(settings.api_keys_file)
    if path.is_file():
        keys += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return keys


def ensure_api_key(path: Path) -> tuple[str, bool]:
    """The first key in ``path``, generating one (file mode 0600) if there is none.

    Returns the key and whether it was just created.
    """
    if path.is_file():
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
