"""The server secret the security session's keys are derived from.

``DS_SESSION_SECRET`` when set (every control plane of a cluster must share it), else the file
``DS_SESSION_SECRET_FILE``, generated once with 32 random bytes and mode 0600, and refused if
its group or other users can read it. The secret is never logged.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from durable_sessions.hosting.apikeys import check_key_file
from durable_sessions.settings import Settings


def load_session_secret(settings: Settings) -> bytes:
    """The server secret of ``settings``, generating the secret file if there is none."""
    configured = settings.session_secret.get_secret_value()
    if configured:
        return configured.encode()
    path = Path(settings.session_secret_file)
    if not path.is_file():
        _create(path)
    check_key_file(path, "the session secret file")
    return path.read_text().strip().encode()


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    try:
        # A link appears whole and never replaces a file: of two processes starting at once,
        # one secret wins and both read it.
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
