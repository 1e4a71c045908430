"""Throwaway certificates for TLS tests: a CA of their own (trustme) and one server's pair."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA that signed the server's certificate, the certificate, its key."""

    ca: Path
    cert: Path
    key: Path


def certificates(folder: Path, *names: str) -> Certificates:
    """A fresh CA and a server certificate for ``names`` (default: this machine), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    issued = authority.issue_cert(*(names or ("127.0.0.1", "localhost")))
    made = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    authority.cert_pem.write_to_path(str(made.ca))
    issued.cert_chain_pems[0].write_to_path(str(made.cert))
    issued.private_key_pem.write_to_path(str(made.key))
    made.key.chmod(0o600)
    return made
