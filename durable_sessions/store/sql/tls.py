"""libpq's TLS parameters of a PostgreSQL URL, translated for asyncpg.

asyncpg takes ``ssl=`` (a mode or an ``ssl.SSLContext``), not libpq's ``sslmode``,
``sslrootcert``, ``sslcert`` and ``sslkey``, which SQLAlchemy would hand it unchanged. They are
taken off the URL and turned into the ``ssl`` argument with libpq's meaning: ``verify-full``
checks the server's certificate against ``sslrootcert`` (else the system's CAs) and its host
name, ``verify-ca`` the certificate only (a root certificate without a mode means
``verify-full``), ``require`` encrypts without checking (as libpq does
when no root certificate is given), ``prefer``/``allow`` try TLS, ``disable`` never.
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy.engine import URL

from durable_sessions.errors import ConfigurationError

LIBPQ_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
_PLAIN_MODES = {"disable": False, "allow": "allow", "prefer": "prefer"}
_VERIFYING_MODES = {"verify-ca": False, "verify-full": True}
"""Each verifying mode, and whether it checks the host name."""


def ssl_argument(url: URL) -> tuple[URL, dict[str, Any]]:
    """``url`` without libpq's TLS parameters, and the asyncpg connect arguments they mean."""
    query = {name: url.query[name] for name in LIBPQ_PARAMETERS if name in url.query}
    if not query:
        return url, {}
    rest = url.difference_update_query(LIBPQ_PARAMETERS)
    given = {name: value if isinstance(value, str) else value[-1] for name, value in query.items()}
    mode = given.get("sslmode", "verify-full" if "sslrootcert" in given else "prefer")
    root = given.get("sslrootcert")
    if mode == "require" and root:
        mode = "verify-ca"  # libpq: require with a root certificate verifies it
    if mode in _PLAIN_MODES:
        return rest, {"ssl": _PLAIN_MODES[mode]}
    if mode == "require":
        return rest, {"ssl": "require"}
    if mode not in _VERIFYING_MODES:
        known = ", ".join([*_PLAIN_MODES, "require", *_VERIFYING_MODES])
        raise ConfigurationError(f"unknown sslmode {mode!r} in the database URL: use {known}")
    return rest, {"ssl": _context(given, check_hostname=_VERIFYING_MODES[mode])}


def _context(given: dict[str, str], *, check_hostname: bool) -> ssl.SSLContext:
    root = given.get("sslrootcert")
    try:
        if root == "system":
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=root)
        context.check_hostname = check_hostname
        if "sslcert" in given:
            context.load_cert_chain(given["sslcert"], given.get("sslkey"))
    except OSError as e:  # ssl.SSLError among them
        raise ConfigurationError(f"cannot load the database's TLS files: {e}") from e
    return context
