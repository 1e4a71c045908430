"""The control plane's certificate and key, checked before anything listens; the broker URL
may not turn certificate verification off."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from durable_sessions.errors import ConfigurationError
from durable_sessions.hosting.tls import server_tls
from durable_sessions.settings import Settings
from tests.tls import certificates


def test_no_certificate_means_plain_http() -> None:
    assert server_tls(Settings(tls_cert="", tls_key="")) is None


def test_a_key_without_its_certificate_is_refused(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with pytest.raises(ConfigurationError, match="--tls-key was given without --tls-cert"):
        server_tls(Settings(tls_key=str(certs.key)))


def test_an_unreadable_certificate_is_refused(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    certs.cert.unlink()
    settings = Settings(tls_cert=str(certs.cert), tls_key=str(certs.key))
    with pytest.raises(ConfigurationError, match="cannot read the TLS certificate"):
        server_tls(settings)


def test_the_pair_is_kept_with_absolute_paths_and_pins_the_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificates(tmp_path / "tls")
    monkeypatch.chdir(tmp_path)
    tls = server_tls(Settings(tls_cert="tls/server.pem", tls_key="tls/server.key"))
    assert tls is not None
    assert tls.cert == str(tmp_path / "tls" / "server.pem")
    context = tls.pinned_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN


@pytest.mark.parametrize("query", ["no_verify_ssl=1", "no_verify_ssl=", "x=1&no_verify_ssl=0"])
def test_a_broker_url_that_skips_verification_is_refused(query: str) -> None:
    with pytest.raises(ValidationError, match="DS_BROKER_CA_FILE"):
        Settings(broker_url=f"amqps://guest:guest@rabbit:5671/?{query}")


def test_an_amqps_url_is_accepted() -> None:
    url = "amqps://guest:guest@rabbit:5671/"
    assert Settings(broker_url=url, broker_ca_file="/ca.pem").broker_url == url
