"""``durable-sessions up`` serving HTTPS: clients with the CA get in, others get a certificate
error, and a certificate without its key (or a file that cannot be read) stops it at start."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import BROKER_URL, require
from tests.system.test_up_and_demo import base_env, cli, free_port, services, unique_endpoint
from tests.tls import Certificates, certificates

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.timeout(180)]
__all__ = ["unique_endpoint"]  # the fixture, used here
KEY = "tls-test-key-0123456789"


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return certificates(tmp_path / "tls")


@pytest.fixture
def https_up(
    tmp_path: Path, certs: Certificates, unique_endpoint: Callable[[], str]
) -> Iterator[str]:
    """A running ``up --tls-cert --tls-key``; yields its https:// address."""
    require("RabbitMQ", BROKER_URL, 5672)
    port = free_port()
    env = base_env(DS_API_KEYS=KEY, DS_SERVICES=services(unique_endpoint()))
    log_path = tmp_path / "up.log"
    args = ["up", "--port", str(port), "--workers", "1"]
    args += ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "durable_sessions", *args],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "durable-sessions is up" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"up did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        assert f"control plane https://127.0.0.1:{port}" in log_path.read_text()
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_up_serves_https_to_clients_that_trust_its_ca(
    https_up: str, certs: Certificates, tmp_path: Path
) -> None:
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=https_up, headers=headers, verify=trusted, timeout=30) as http:
        assert http.get("/v1/contracts").status_code == 200
        opened = http.post("/v1/sessions", json={"contract": "Calculator"})
        assert opened.status_code == 201, opened.text
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{https_up}/v1/contracts", headers=headers, timeout=30)
    env = base_env(DS_API_URL=https_up, DS_API_KEY=KEY)
    refused = cli("sessions", "list", cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    listed = cli("sessions", "list", cwd=tmp_path, env={**env, "DS_API_CA_FILE": str(certs.ca)})
    assert listed.returncode == 0, listed.stderr
    assert opened.json()["id"] in listed.stdout


@pytest.mark.parametrize("command", ["up", "api"])
def test_a_certificate_without_its_key_is_refused_at_start(
    command: str, certs: Certificates, tmp_path: Path
) -> None:
    done = cli(command, "--tls-cert", str(certs.cert), cwd=tmp_path, env=base_env())
    assert done.returncode == 1
    assert "--tls-cert was given without --tls-key" in done.stderr
    assert not (tmp_path / "durable-sessions.db").exists()


@pytest.mark.parametrize("command", ["up", "api"])
def test_an_unreadable_key_is_refused_at_start(
    command: str, certs: Certificates, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.key"
    env = base_env(DS_TLS_CERT=str(certs.cert), DS_TLS_KEY=str(missing))
    done = cli(command, cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert f"cannot read the TLS private key {missing}" in done.stderr
    os.chmod(certs.key, 0o600)
    wrong = certificates(tmp_path / "other")
    env = base_env(DS_TLS_CERT=str(certs.cert), DS_TLS_KEY=str(wrong.key))
    mismatched = cli(command, cwd=tmp_path, env=env)
    assert mismatched.returncode == 1
    assert "do not load as a PEM pair" in mismatched.stderr
    assert not (tmp_path / "durable-sessions.db").exists()
