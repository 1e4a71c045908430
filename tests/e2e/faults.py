"""Faults of the real services: RabbitMQ and PostgreSQL taken down and brought back.

The services are controlled the way this machine runs them: with ``rabbitmqctl`` and
``pg_ctlcluster`` when they are installed here, else with ``docker compose`` when it runs them.
When neither works the test is skipped, or fails under ``CI=true``. A service taken down is
always started again, in a ``finally``, and waited for until it answers.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from durable_sessions.model.topology import EndpointTopology
from tests.e2e.processes import POLL_S, REPO
from tests.services import in_ci, reachable

COMMAND_TIMEOUT_S = 120.0
START_TIMEOUT_S = 120.0


def unavailable(message: str) -> None:
    """Skip the test, or fail it under ``CI=true``, where nothing may be skipped."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: the end-to-end tests must run)", pytrace=False)
    pytest.skip(message)


def _run(argv: Sequence[str]) -> str:
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _works(argv: Sequence[str]) -> bool:
    try:
        _run(argv)
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


@cache
def _compose_services() -> frozenset[str]:
    if shutil.which("docker") is None:
        return frozenset()
    try:
        listed = _run(["docker", "compose", "ps", "--services", "--status", "running"])
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(listed.split())


@dataclass(frozen=True, slots=True)
class Control:
    """The commands that control one service, or None when this machine offers none."""

    prefix: tuple[str, ...]
    """Put before a command of the service's own tools (``docker compose exec -T ...``)."""
    stop: tuple[str, ...]
    start: tuple[str, ...]


@cache
def rabbitmq_control() -> Control | None:
    """How to control the RabbitMQ on 127.0.0.1:5672."""
    if shutil.which("rabbitmqctl") and _works(["rabbitmqctl", "-q", "status"]):
        return Control((), ("rabbitmqctl", "stop_app"), ("rabbitmqctl", "start_app"))
    if "rabbitmq" in _compose_services():
        exec_ = ("docker", "compose", "exec", "-T", "rabbitmq")
        return Control(
            exec_, (*exec_, "rabbitmqctl", "stop_app"), (*exec_, "rabbitmqctl", "start_app")
        )
    return None


@cache
def postgres_control(port: int = 5432) -> Control | None:
    """How to control the PostgreSQL cluster that listens on ``port``."""
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        for line in _run(["pg_lsclusters", "--no-header"]).splitlines():
            version, cluster, cluster_port, *_ = line.split()
            if int(cluster_port) == port:
                redirect = (
                    () if Path("/run/systemd/system").is_dir() else ("--skip-systemctl-redirect",)
                )
                command = ("pg_ctlcluster", *redirect, version, cluster)
                return Control((), (*command, "stop", "-m", "fast"), (*command, "start"))
    if "postgres" in _compose_services():
        compose = ("docker", "compose")
        return Control((), (*compose, "stop", "postgres"), (*compose, "start", "postgres"))
    return None


def require_rabbitmq_control() -> Control:
    """The RabbitMQ control, or skip (fail under CI)."""
    control = rabbitmq_control()
    if control is None:
        unavailable("cannot control RabbitMQ here: no working rabbitmqctl, no docker compose")
    assert control is not None
    return control


def require_postgres_control() -> Control:
    """The PostgreSQL control, or skip (fail under CI)."""
    control = postgres_control()
    if control is None:
        unavailable("cannot control PostgreSQL here: no pg_ctlcluster cluster, no docker compose")
    assert control is not None
    return control


async def _until_port(port: int, *, up: bool) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while reachable(f"tcp://127.0.0.1:{port}", port, timeout=0.5) != up:
        if loop.time() > deadline:
            raise TimeoutError(f"port {port} still {'closed' if up else 'open'}")
        await asyncio.sleep(POLL_S)


@dataclass(slots=True)
class Outage:
    """When a service was stopped, told to start again, and answered again (monotonic s)."""

    stopped_at: float = 0.0
    restarting_at: float = 0.0
    answering_at: float = 0.0

    @property
    def seconds(self) -> float:
        """How long the service did not answer."""
        return self.answering_at - self.stopped_at


@asynccontextmanager
async def _down(control: Control, port: int, *ready: Sequence[str]) -> AsyncIterator[Outage]:
    loop = asyncio.get_running_loop()
    outage = Outage()
    try:
        await asyncio.to_thread(_run, control.stop)
        await _until_port(port, up=False)
        outage.stopped_at = loop.time()
        yield outage
    finally:
        outage.restarting_at = loop.time()
        await asyncio.to_thread(_run, control.start)
        for command in ready:
            await asyncio.to_thread(_run, command)
        await _until_port(port, up=True)
        outage.answering_at = loop.time()


def rabbitmq_down() -> AbstractAsyncContextManager[Outage]:
    """RabbitMQ stopped (``stop_app``) for the block, then started and awaited."""
    control = require_rabbitmq_control()
    return _down(control, 5672, [*control.prefix, "rabbitmqctl", "-q", "await_startup"])


def postgres_down() -> AbstractAsyncContextManager[Outage]:
    """PostgreSQL stopped (fast shutdown) for the block, then started and awaited."""
    return _down(require_postgres_control(), 5432)


def ensure_up() -> None:
    """Start RabbitMQ or PostgreSQL if it does not answer (after a test stopped mid-outage)."""
    for port, control, ready in (
        (5672, rabbitmq_control(), ("rabbitmqctl", "-q", "await_startup")),
        (5432, postgres_control(), None),
    ):
        if control is None or reachable(f"tcp://127.0.0.1:{port}", port, timeout=0.5):
            continue
        _run(control.start)
        if ready is not None:
            _run([*control.prefix, *ready])


async def queue_stats(topology: EndpointTopology, *columns: str) -> dict[str, tuple[int, ...]]:
    """Numeric ``rabbitmqctl list_queues`` columns of each queue of an endpoint."""
    control = require_rabbitmq_control()
    argv = [*control.prefix, "rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name"]
    listed = await asyncio.to_thread(_run, [*argv, *columns])
    ours = {q.name for q in (*topology.queues, topology.dead_letter_queue)}
    stats = {}
    for line in listed.splitlines():
        name, *values = line.split()
        if name in ours:
            stats[name] = tuple(int(value) for value in values)
    return stats


async def queue_depths(topology: EndpointTopology) -> dict[str, tuple[int, ...]]:
    """Messages (ready and unacknowledged) and unacknowledged messages in each queue."""
    return await queue_stats(topology, "messages", "messages_unacknowledged")
