"""A PostgreSQL server with TLS on, reached with ``sslmode=verify-full`` and ``sslrootcert``.

The module starts a server of its own (initdb on a spare port, ``ssl=on`` with a throwaway CA's
certificate); the shared PostgreSQL is not touched. It is stopped and removed even on failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from durable_sessions.errors import StoreUnavailable
from durable_sessions.store.sql import SqlStore, migrate
from tests.services import in_ci
from tests.tls import Certificates, certificates

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class TlsServer:
    """A running PostgreSQL: its URL without TLS parameters, and its certificates."""

    url: str
    certs: Certificates


def _bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def server() -> Iterator[TlsServer]:
    bin_dir = _bin()
    if bin_dir is None:
        message = "no PostgreSQL server binaries in /usr/lib/postgresql"
        if in_ci():
            pytest.fail(f"{message} (CI=true: real services are required)", pytrace=False)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="ds-pg-tls-"))
    data = base / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    certs = certificates(base / "tls", "localhost")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        for path in base.rglob("*"):
            shutil.chown(path, "postgres")
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c ssl=on "
        f"-c ssl_cert_file={certs.cert} -c ssl_key_file={certs.key}"
    )
    pg_ctl = str(bin_dir / "pg_ctl")
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        subprocess.run(_as_postgres(initdb), check=True, capture_output=True, timeout=60)
        start = [pg_ctl, "-D", str(data), "-o", options, "-l", f"{base}/log", "-w", "start"]
        subprocess.run(_as_postgres(start), check=True, capture_output=True, timeout=60)
        yield TlsServer(f"postgresql+asyncpg://postgres@localhost:{port}/postgres", certs)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)


async def test_verify_full_with_the_root_certificate_connects_over_tls(server: TlsServer) -> None:
    url = f"{server.url}?sslmode=verify-full&sslrootcert={server.certs.ca}"
    await migrate.upgrade(url)
    assert await migrate.current_revision(url) == migrate.head_revision()
    store = SqlStore.from_url(url)
    try:
        async with store.engine.connect() as conn:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            assert (await conn.execute(sa.text(query))).scalar_one() is True
    finally:
        await store.close()


async def test_verify_full_without_the_root_certificate_is_refused(server: TlsServer) -> None:
    store = SqlStore.from_url(f"{server.url}?sslmode=verify-full")
    try:
        with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await store.ping()
    finally:
        await store.close()


async def test_another_name_than_the_certificate_s_is_refused(server: TlsServer) -> None:
    url = server.url.replace("@localhost:", "@127.0.0.1:")
    store = SqlStore.from_url(f"{url}?sslmode=verify-full&sslrootcert={server.certs.ca}")
    try:
        with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await store.ping()
    finally:
        await store.close()
