"""HTTPS for the control plane: the certificate and key it serves, checked before it starts.

A certificate without its key (or the reverse), a file that cannot be read, or a pair that
does not load is refused with a message naming the file, before anything listens. The same
pair lets ``up`` check its own control plane: the probe trusts exactly the served certificate
(pinned), so it needs no CA and names no host.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from durable_sessions.errors import ConfigurationError
from durable_sessions.settings import Settings


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The PEM files the control plane serves HTTPS with."""

    cert: str
    key: str

    def pinned_context(self) -> ssl.SSLContext:
        """A client context that trusts the certificates of this file, and no other."""
        context = ssl.create_default_context(cafile=self.cert)
        context.check_hostname = False  # the pin is the certificate itself, not a name
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return context


def server_tls(settings: Settings) -> ServerTls | None:
    """The checked ``DS_TLS_CERT``/``DS_TLS_KEY`` pair, or None when neither is set."""
    cert, key = settings.tls_cert, settings.tls_key
    if not cert and not key:
        return None
    if not cert or not key:
        given, missing = ("--tls-cert", "--tls-key") if cert else ("--tls-key", "--tls-cert")
        raise ConfigurationError(
            f"{given} was given without {missing}: HTTPS needs both the certificate and its "
            "private key (DS_TLS_CERT and DS_TLS_KEY)"
        )
    for what, path in (("certificate", cert), ("private key", key)):
        try:
            Path(path).read_bytes()
        except OSError as e:
            raise ConfigurationError(f"cannot read the TLS {what} {path}: {e.strerror or e}") from e
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as e:
        raise ConfigurationError(
            f"the TLS certificate {cert} and key {key} do not load as a PEM pair: {e.reason or e}"
        ) from e
    return ServerTls(str(Path(cert).resolve()), str(Path(key).resolve()))
