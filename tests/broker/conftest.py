"""Brokers for the broker suite: the memory twin, and RabbitMQ in a virtual host of its own.

RabbitMQ tests run in a vhost created for the test run (with ``rabbitmqctl``, or the command in
``DS_TEST_RABBITMQCTL``, e.g. ``docker compose exec -T rabbitmq rabbitmqctl``), so closing
connections from the broker side touches no one else's. Without that command they run in the
vhost of ``DS_TEST_BROKER_URL`` and the tests that need broker control skip (fail under CI).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from tests.broker.harness import (
    RABBITMQCTL,
    BrokerHarness,
    MemoryHarness,
    RabbitHarness,
    RabbitServer,
)
from tests.services import BROKER_URL, require


def _run_ctl(*args: str) -> bool:
    try:
        done = subprocess.run(
            [*RABBITMQCTL, "-q", *args], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitServer]:
    """RabbitMQ, in a vhost created for this run and deleted after it when possible."""
    require("RabbitMQ", BROKER_URL, 5672)
    vhost = f"ds-test-{uuid.uuid4().hex[:12]}"
    parts = urlsplit(BROKER_URL)
    user = parts.username or "guest"
    if not (
        _run_ctl("add_vhost", vhost) and _run_ctl("set_permissions", "-p", vhost, user, *[".*"] * 3)
    ):
        _run_ctl("delete_vhost", vhost)
        yield RabbitServer(BROKER_URL, None)
        return
    try:
        yield RabbitServer(urlunsplit(parts._replace(path="/" + quote(vhost, safe=""))), vhost)
    finally:
        _run_ctl("delete_vhost", vhost)


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerHarness]:
    """The same rules on every broker: the memory twin and RabbitMQ."""
    harness: BrokerHarness
    if request.param == "memory":
        harness = MemoryHarness()
    else:
        harness = RabbitHarness(request.getfixturevalue("rabbitmq_server"))
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def rabbit(rabbitmq_server: RabbitServer) -> AsyncIterator[RabbitHarness]:
    """RabbitMQ alone, for what only the real broker can show."""
    harness = RabbitHarness(rabbitmq_server)
    try:
        yield harness
    finally:
        await harness.close()
