"""Probes for the real services tests need: skip when absent locally, fail under CI=true."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "DS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/postgres"
)
BROKER_URL = os.environ.get("DS_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


def in_ci() -> bool:
    """True when running in CI, where a missing service is a failure, never a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(url: str, default_port: int, timeout: float = 2.0) -> bool:
    """True if something accepts TCP connections at the host and port of ``url``."""
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=timeout
        ):
            return True
    except OSError:
        return False


def require(name: str, url: str, default_port: int) -> None:
    """Skip (locally) or fail (in CI) unless the service at ``url`` is reachable."""
    if reachable(url, default_port):
        return
    message = f"{name} is not reachable at {urlsplit(url).hostname}:{urlsplit(url).port}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: real services are required)", pytrace=False)
    pytest.skip(message)
