"""``durable-sessions up`` and ``demo`` as real processes, driven over HTTP and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from durable_sessions.model.topology import EndpointTopology
from tests.e2e.journal import SERVICE_PATH
from tests.services import BROKER_URL, require
from tests.stacks import delete_topology

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durable_sessions", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DS_")}
    env.update(DS_BROKER_URL=BROKER_URL, PYTHONPATH=str(REPO), **extra)
    return env


def services(endpoint: str) -> str:
    return f"durable_sessions.examples.calculator:CalculatorService@{endpoint}"


class Up:
    """A running ``durable-sessions up`` and what it printed."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int) -> None:
        self.cwd, self.env, self.port = cwd, env, port
        self.log = (cwd / "up.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "durable_sessions", "up", "--port", str(port), "--workers", "2"],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.cwd / "up.log").read_text()

    def wait_up(self) -> None:
        deadline = time.monotonic() + 90
        while "durable-sessions is up" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"up did not start:\n{self.output()}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture
def unique_endpoint() -> Iterator[Callable[[], str]]:
    """Endpoint names no other test uses; their queues and exchanges are deleted afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"calculator-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        asyncio.run(delete_topology(EndpointTopology(name)))


@pytest.fixture
def run_up(
    tmp_path: Path, unique_endpoint: Callable[[], str]
) -> Iterator[Callable[[dict[str, str]], Up]]:
    """Start ``up`` processes; they are killed before their endpoints' topologies are deleted."""
    require("RabbitMQ", BROKER_URL, 5672)
    started: list[Up] = []

    def start(extra: dict[str, str]) -> Up:
        up = Up(tmp_path, base_env(**extra), free_port())
        started.append(up)
        up.wait_up()
        return up

    yield start
    for up in started:
        up.kill()


@contextmanager
def calculator_up(cwd: Path, **env: str) -> Iterator[Up]:
    """An ``up`` serving the calculator on an endpoint of its own, with ``env``; afterwards
    killed and its endpoint's topology deleted."""
    require("RabbitMQ", BROKER_URL, 5672)
    endpoint = f"calculator-{uuid.uuid4().hex[:8]}"
    running = Up(cwd, base_env(DS_SERVICES=services(endpoint), **env), free_port())
    try:
        running.wait_up()
        yield running
    finally:
        running.kill()
        asyncio.run(delete_topology(EndpointTopology(endpoint)))


def drive_calculator(up: Up, key: str, endpoint: str) -> str:
    with httpx.Client(
        base_url=up.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        session = http.post(
            "/v1/sessions", json={"contract": "Calculator", "labels": {"run": "e2e"}}
        )
        assert session.status_code == 201, session.text
        sid: str = session.json()["id"]
        for op, args in [
            ("clear", {}),
            ("add_to", {"n": 6}),
            ("multiply_by", {"n": 7}),
            ("equals", {}),
        ]:
            sent = http.post(f"/v1/sessions/{sid}/messages", json={"operation": op, "args": args})
            assert sent.status_code == 202, sent.text
        result = http.get(f"/v1/sessions/{sid}/messages/4", params={"wait": 30}).json()
        assert (result["status"], result["result"]) == ("applied", 42)
        shown = http.get(f"/v1/sessions/{sid}").json()
        assert shown["state"] == "closed"
        assert shown["counters"] == {
            "sent": 4,
            "applied": 4,
            "parked": 0,
            "duplicates": 0,
            "dead": 0,
        }
        assert shown["instance_state"] == {"result": 42.0}
        metrics = http.get("/metrics").text
        assert f'ds_messages_applied_total{{endpoint="{endpoint}"}}' in metrics
        assert 'ds_sessions{state="closed"} 1.0' in metrics
    return sid


def check_inspection(up: Up, sid: str, key: str) -> None:
    env = {**up.env, "DS_API_URL": up.url, "DS_API_KEY": key}
    listed = cli("sessions", "list", "--label", "run=e2e", cwd=up.cwd, env=env)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:3] == ["ID", "STATE", "CONTRACT"]
    assert row.split()[:5] == [sid, "closed", "Calculator", "4", "4"]
    shown = cli("sessions", "show", sid, cwd=up.cwd, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "sent 4, applied 4, parked 0, duplicates 0, dead 0" in shown.stdout
    assert '{"result": 42.0}' in shown.stdout
    as_json = cli("sessions", "show", sid, "--json", cwd=up.cwd, env=env)
    assert json.loads(as_json.stdout)["state"] == "closed"
    missing = cli("sessions", "show", "no-such-id", cwd=up.cwd, env=env)
    assert missing.returncode == 1
    assert "error: Session not found" in missing.stderr
    letters = cli("dead-letters", "list", cwd=up.cwd, env=env)
    assert letters.returncode == 0
    assert letters.stdout.splitlines()[0].split()[:2] == ["ID", "REASON"]
    nothing = cli("dead-letters", "replay", "--session", sid, cwd=up.cwd, env=env)
    assert nothing.returncode == 1
    assert "has no dead letters left to replay" in nothing.stderr
    endpoint = json.loads(as_json.stdout)["endpoint"]
    endpoints = cli("endpoints", "list", cwd=up.cwd, env=env)
    assert endpoints.returncode == 0, endpoints.stderr
    rows = [line.split() for line in endpoints.stdout.splitlines()]
    assert rows[0] == ["NAME", "CONTRACT", "BINDING", "SESSIONS", "DATAGRAM", "LISTENER"]
    assert [endpoint, "Calculator", "queued-session", "yes", "-"] in rows
    resumed = cli("endpoints", "resume", endpoint, "--action", "retry", cwd=up.cwd, env=env)
    assert resumed.returncode == 1
    assert "is not faulted" in resumed.stderr


@pytest.mark.postgres
def test_up_on_postgres(
    run_up: Callable[[dict[str, str]], Up],
    make_postgres_database: Callable[[], str],
    unique_endpoint: Callable[[], str],
) -> None:
    url = make_postgres_database()
    endpoint = unique_endpoint()
    up = run_up(
        {"DS_DATABASE_URL": url, "DS_API_KEYS": "e2e-key", "DS_SERVICES": services(endpoint)}
    )
    assert "Generated an API key" not in up.output()
    sid = drive_calculator(up, "e2e-key", endpoint)
    check_inspection(up, sid, "e2e-key")
    assert up.stop() == 0
    assert "stopped" in up.output()


def test_up_on_the_sqlite_default(
    run_up: Callable[[dict[str, str]], Up], tmp_path: Path, unique_endpoint: Callable[[], str]
) -> None:
    endpoint = unique_endpoint()
    up = run_up({"DS_SERVICES": services(endpoint)})
    output = up.output()
    assert "Generated an API key" in output
    key_file = tmp_path / ".ds" / "api-keys"
    key = key_file.read_text().strip()
    assert key in output
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "durable-sessions.db").is_file()
    sid = drive_calculator(up, key, endpoint)
    check_inspection(up, sid, key)
    unauthorized = httpx.get(f"{up.url}/v1/sessions")
    assert unauthorized.status_code == 401
    assert up.stop() == 0
    again = run_up({"DS_SERVICES": services(endpoint)})
    assert key not in again.output()
    assert again.stop() == 0


def test_killing_up_takes_its_processes_with_it(
    run_up: Callable[[dict[str, str]], Up], unique_endpoint: Callable[[], str]
) -> None:
    up = run_up({"DS_SERVICES": services(unique_endpoint())})
    children = subprocess.run(
        ["pgrep", "-P", str(up.process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 3
    up.process.kill()
    up.process.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, "children outlived up"
        time.sleep(0.1)


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    require("RabbitMQ", BROKER_URL, 5672)
    done = cli("demo", cwd=tmp_path, env=base_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[6/6] Checking the session" in done.stdout
    assert "restarted as pid" in done.stdout
    assert "Demo passed" in done.stdout


def api_child(up: Up) -> int:
    """The pid of the API process ``up`` runs."""
    found = subprocess.run(
        ["pgrep", "-P", str(up.process.pid), "-f", "durable_sessions api"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


async def send_until_accepted(
    http: httpx.AsyncClient, sid: str, index: int, operation: str, args: dict[str, object]
) -> int:
    """Send one message, resending it with the same id until the API accepts it; the resends."""
    body = {"operation": operation, "args": args, "message_id": f"{sid}-{index}"}
    resends = 0
    while True:
        try:
            sent = await http.post(f"/v1/sessions/{sid}/messages", json=body)
        except httpx.TransportError:
            sent = None
        if sent is not None and sent.status_code == 202:
            return resends
        assert sent is None or sent.status_code >= 500, sent.text
        resends += 1
        await asyncio.sleep(0.1)


async def journals_through_an_api_crash(
    up: Up, key: str, sessions: int, writes: int
) -> tuple[int, int]:
    """Write ``writes`` values to each journal while the API is killed; its pid, the resends."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=up.url, headers=headers, timeout=10) as http:
        sids = []
        for _ in range(sessions):
            opened = await http.post("/v1/sessions", json={"contract": "Journal"})
            assert opened.status_code == 201, opened.text
            sids.append(opened.json()["id"])
        accepted = resent = 0
        a_third_accepted = asyncio.Event()

        async def write_journal(sid: str) -> None:
            nonlocal accepted, resent
            await send_until_accepted(http, sid, 0, "begin", {"name": sid})
            for value in range(writes):
                resent += await send_until_accepted(http, sid, value + 1, "write", {"value": value})
                accepted += 1
                if accepted >= sessions * writes // 3:
                    a_third_accepted.set()
            await send_until_accepted(http, sid, writes + 1, "finish", {})

        async def kill_the_api() -> int:
            await a_third_accepted.wait()
            pid = api_child(up)
            os.kill(pid, signal.SIGKILL)
            return pid

        killed, *_ = await asyncio.gather(kill_the_api(), *map(write_journal, sids))
        for sid in sids:
            finished = await http.get(
                f"/v1/sessions/{sid}/messages/{writes + 2}?wait=30", timeout=40
            )
            assert finished.json()["result"] == list(range(writes)), finished.text
            counters = (await http.get(f"/v1/sessions/{sid}")).json()["counters"]
            assert (counters["sent"], counters["applied"]) == (writes + 2, writes + 2)
    return int(killed), resent


@pytest.mark.postgres
def test_killing_the_api_mid_run_loses_nothing(
    run_up: Callable[[dict[str, str]], Up],
    make_postgres_database: Callable[[], str],
    unique_endpoint: Callable[[], str],
) -> None:
    """Sends go on while the API is killed -9: resent ids are applied exactly once, in order."""
    up = run_up(
        {
            "DS_DATABASE_URL": make_postgres_database(),
            "DS_API_KEYS": "e2e-key",
            "DS_SERVICES": f"{SERVICE_PATH}@{unique_endpoint()}",
            # What the killed API had claimed but not yet published waits for its lease to end.
            "DS_OUTBOX_LEASE_S": "3",
        }
    )
    crash = journals_through_an_api_crash(up, "e2e-key", sessions=20, writes=25)
    killed, resent = asyncio.run(crash)
    assert resent > 0
    assert api_child(up) != killed
    assert "restarting it" in up.output()
    assert up.stop() == 0
