"""A SINGLE service in real worker processes: one worker serves it, a second refuses to start
(and so does ``up`` with several workers), and a replacement for a killed one takes over."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from durable_sessions.hosting.composition import connect_client
from durable_sessions.model.topology import EndpointTopology
from durable_sessions.settings import Settings
from tests.e2e.processes import REPO, Proc, child_env
from tests.modes import SingleTallyService, Tally, path_of
from tests.services import BROKER_URL, require
from tests.stacks import delete_topology

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.timeout(120)]

SINGLE = path_of(SingleTallyService)
REFUSAL = re.compile(
    r"error: service 'SingleTallyService' uses Instancing\.SINGLE \(one instance for all "
    r"calls\), and worker \S+ serves it already \(lease 'single:tests\.modes:"
    r"SingleTallyService'\)\. A second worker process would have an instance of its own, so "
    r"this one does not start: serve the service from one worker process, or use "
    r"Instancing\.PER_SESSION or Instancing\.PER_CALL to serve it from many\."
)


def worker(name: str, env: dict[str, str], tmp_path: Path) -> Proc:
    return Proc(name, [sys.executable, "-m", "workers"], env, tmp_path / f"{name}.log")


async def test_a_second_worker_process_refuses_to_serve_a_single_service(
    sqlite_url: str, tmp_path: Path
) -> None:
    require("RabbitMQ", BROKER_URL, 5672)
    endpoint = f"single-{uuid.uuid4().hex[:8]}"
    services = f"{SINGLE}@{endpoint}"
    env = child_env(
        DS_DATABASE_URL=sqlite_url,
        DS_BROKER_URL=BROKER_URL,
        DS_SERVICES=services,
        DS_SINGLETON_LEASE_S="1.5",
    )
    settings = Settings(database_url=sqlite_url, broker_url=BROKER_URL, services=services)
    first, second = worker("first", env, tmp_path), worker("second", env, tmp_path)
    try:
        first.start()
        await first.logged(f"on endpoint '{endpoint}'")
        second.start()
        assert await second.wait(within_s=30) == 1
        assert REFUSAL.search(second.log()), second.log()
        async with connect_client(settings) as client, client.session(Tally) as tally:
            await tally.add(4)
            assert await tally.total() == 4
        first.kill()  # a crash leaves the lease to run out; the replacement waits for that
        second.start()
        await second.logged(f"on endpoint '{endpoint}'")
        async with connect_client(settings) as client:
            assert await client.datagrams(Tally).total() == 0  # a new process, a new singleton
        assert await second.stop() == 0
    finally:
        first.kill()
        second.kill()
        await delete_topology(EndpointTopology(endpoint))


def test_up_refuses_several_workers_for_a_single_service(tmp_path: Path) -> None:
    up = subprocess.run(
        [sys.executable, "-m", "durable_sessions", "up", "--workers", "2", "--service", SINGLE],
        cwd=tmp_path,
        env=child_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (up.returncode, up.stderr.strip()) == (
        1,
        "error: service 'SingleTallyService' uses Instancing.SINGLE (one instance for all "
        "calls), which one worker process serves, so `up --workers 2` would leave the others "
        "refusing to start: run `up --workers 1`, or use Instancing.PER_SESSION or "
        "Instancing.PER_CALL to serve it from many.",
    )
