"""RabbitMQ over TLS (``amqps://``): the broker's certificate is verified against the CA setting.

A RabbitMQ node of its own is started for this module, with a TLS listener and a throwaway CA
(the shared broker on 5672 is not touched), and stopped afterwards even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.errors import BrokerUnavailable
from durable_sessions.hosting.composition import connect_broker
from durable_sessions.model.topology import EndpointTopology
from durable_sessions.settings import Settings
from tests.broker.harness import numbered, take
from tests.services import in_ci
from tests.tls import Certificates, certificates

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
START_WAIT_S = 60.0


@dataclass(frozen=True)
class TlsNode:
    """A running RabbitMQ node: its amqps:// URL and the CA that signed its certificate."""

    url: str
    certs: Certificates


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message} (CI=true: real services are required)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    if not (RABBIT_BIN / "rabbitmq-server").exists() or shutil.which("erl") is None:
        unavailable(f"no RabbitMQ server in {RABBIT_BIN}")
    base = tmp_path_factory.mktemp("rabbitmq-tls")
    certs = certificates(base / "tls", "localhost")
    amqp, amqps, dist = free_ports(3)
    name = f"ds-tls-{uuid.uuid4().hex[:8]}@localhost"
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp}\n"
        f"listeners.ssl.default = 127.0.0.1:{amqps}\n"
        f"ssl_options.cacertfile = {certs.ca}\n"
        f"ssl_options.certfile = {certs.cert}\n"
        f"ssl_options.keyfile = {certs.key}\n"
        "ssl_options.verify = verify_none\n"
        "ssl_options.fail_if_no_peer_cert = false\n"
    )
    (base / "enabled_plugins").write_text("[].\n")
    (base / "rabbitmq-env.conf").write_text("")
    env = {
        **os.environ,
        "HOME": str(base),  # the node's Erlang cookie lives here, not in the real home
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(amqp),
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
    }
    try:
        subprocess.run(
            [RABBIT_BIN / "rabbitmq-server", "-detached"], env=env, check=True, timeout=30
        )
        deadline = time.monotonic() + START_WAIT_S
        while not listening(amqps):
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in (base / "log").glob("*.log"))
                unavailable(f"the TLS RabbitMQ node did not listen on {amqps}:\n{logs}")
            time.sleep(0.2)
        yield TlsNode(f"amqps://guest:guest@localhost:{amqps}/", certs)
    finally:
        subprocess.run(
            [RABBIT_BIN / "rabbitmqctl", "-n", name, "stop"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )


async def test_publish_and_consume_over_amqps_with_the_ca(node: TlsNode) -> None:
    settings = Settings(broker_url=node.url, broker_ca_file=str(node.certs.ca))
    broker = await connect_broker(settings)
    try:
        topology = EndpointTopology(f"tls-{uuid.uuid4().hex[:8]}")
        await broker.declare(topology)
        await broker.ping()
        assert await broker.publish(numbered(topology, 3)) == [True, True, True]
        consumer = await broker.consume([topology.session_queue(0).name], prefetch=10)
        deliveries = await take(consumer, 3)
        assert [d.body for d in deliveries] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        await consumer.ack(deliveries)
        await consumer.close()
    finally:
        await broker.close()


async def test_without_the_ca_the_certificate_is_refused(node: TlsNode) -> None:
    with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await RabbitBroker.connect(node.url, connect_timeout=10)


async def test_another_name_than_the_certificate_s_is_refused(node: TlsNode) -> None:
    other = node.url.replace("@localhost:", "@127.0.0.1:")  # not a name it carries
    with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await RabbitBroker.connect(other, ca_file=str(node.certs.ca), connect_timeout=10)
