"""libpq's ``sslmode``/``sslrootcert`` in a PostgreSQL URL, translated into asyncpg's ``ssl``."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from durable_sessions.errors import ConfigurationError
from durable_sessions.store.sql.tls import ssl_argument
from tests.tls import certificates

BASE = "postgresql+asyncpg://ds:pw@db.example:5432/ds"


def test_a_url_without_tls_parameters_is_unchanged() -> None:
    url = make_url(f"{BASE}?prepared_statement_cache_size=0")
    assert ssl_argument(url) == (url, {})


def test_verify_full_checks_the_certificate_and_the_host_name(tmp_path: Path) -> None:
    ca = certificates(tmp_path).ca
    plain, args = ssl_argument(make_url(f"{BASE}?sslmode=verify-full&sslrootcert={ca}&x=1"))
    assert plain.render_as_string(hide_password=False) == f"{BASE}?x=1"
    context = args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1


@pytest.mark.parametrize("query", ["sslmode=verify-ca", "sslmode=require"])
def test_verify_ca_and_require_with_a_root_check_the_certificate_only(
    tmp_path: Path, query: str
) -> None:
    ca = certificates(tmp_path).ca
    _, args = ssl_argument(make_url(f"{BASE}?{query}&sslrootcert={ca}"))
    assert args["ssl"].verify_mode is ssl.CERT_REQUIRED
    assert not args["ssl"].check_hostname


def test_a_root_certificate_alone_means_verify_full(tmp_path: Path) -> None:
    ca = certificates(tmp_path).ca
    _, args = ssl_argument(make_url(f"{BASE}?sslrootcert={ca}"))
    assert args["ssl"].check_hostname


def test_verify_full_without_a_root_uses_the_system_cas() -> None:
    _, args = ssl_argument(make_url(f"{BASE}?sslmode=verify-full"))
    assert args["ssl"].check_hostname
    assert args["ssl"].verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("mode", "argument"),
    [("disable", False), ("allow", "allow"), ("prefer", "prefer"), ("require", "require")],
)
def test_the_other_modes_keep_libpq_s_meaning(mode: str, argument: object) -> None:
    plain, args = ssl_argument(make_url(f"{BASE}?sslmode={mode}"))
    assert args == {"ssl": argument}
    assert "sslmode" not in plain.query


def test_an_unknown_mode_or_a_missing_root_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown sslmode 'verify'"):
        ssl_argument(make_url(f"{BASE}?sslmode=verify"))
    missing = tmp_path / "none.pem"
    with pytest.raises(ConfigurationError, match="cannot load the database's TLS files"):
        ssl_argument(make_url(f"{BASE}?sslmode=verify-full&sslrootcert={missing}"))
