"""``durable-sessions demo``: a guided calculator session over REST, with a worker killed mid-way.

The demo runs its own control plane and workers on a fresh SQLite database in a temporary
folder, on its own endpoint, so it never touches an installation on the same machine; it needs
only RabbitMQ. It prints each step and exits non-zero if the result is wrong.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from durable_sessions.cli.supervisor import Supervisor
from durable_sessions.cli.up import wait_ready
from durable_sessions.settings import Settings, redact_url
from durable_sessions.store.sql import migrate

ENDPOINT = "demo-calculator"
FIRST = [
    ("clear", {}),
    ("add_to", {"n": 10}),
    ("multiply_by", {"n": 3}),
    ("subtract_from", {"n": 4}),
]
SECOND = [(op, {"n": n}) for op, n in [("add_to", 7), ("multiply_by", 2), ("divide_by", 4)] * 6]


def _expected() -> float:
    value = 0.0
    for op, args in FIRST + SECOND:
        n = float(args.get("n", 0))
        value = {
            "clear": 0.0,
            "add_to": value + n,
            "subtract_from": value - n,
            "multiply_by": value * n,
            "divide_by": value / n if n else value,
        }[op]
    return value


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Steps:
    def __init__(self, total: int) -> None:
        self.total, self.number, self.started = total, 0, time.monotonic()

    def step(self, text: str) -> None:
        self.number += 1
        print(f"\n[{self.number}/{self.total}] {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"      {text}", flush=True)


async def _send_all(
    http: httpx.AsyncClient, sid: str, calls: list[tuple[str, dict[str, Any]]]
) -> list[int]:
    seqs = []
    for op, args in calls:
        response = await http.post(
            f"/v1/sessions/{sid}/messages", json={"operation": op, "args": args}
        )
        response.raise_for_status()
        seqs.append(response.json()["seq"])
    return seqs


async def _session(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await http.get(f"/v1/sessions/{sid}")
    response.raise_for_status()
    session: dict[str, Any] = response.json()
    return session


async def run_demo(settings: Settings, workers: int = 2) -> int:
    """Run the demo; the exit status is 0 when the session ends with the right result."""
    steps = _Steps(6)
    folder = Path(tempfile.mkdtemp(prefix="durable-sessions-demo-"))
    log_path = folder / "processes.log"
    database = f"sqlite+aiosqlite:///{folder / 'demo.db'}"
    key, port = secrets.token_urlsafe(24), _free_port()
    ok = False
    steps.step(f"Starting a control plane and {workers} workers (logs: {log_path})")
    await migrate.upgrade(database)
    steps.note(f"database {redact_url(database)}, broker {redact_url(settings.broker_url)}")
    with log_path.open("w") as log_file:
        supervisor = Supervisor(
            {
                "DS_DATABASE_URL": database,
                "DS_API_KEYS": key,
                "DS_SERVICES": f"durable_sessions.examples.calculator:CalculatorService@{ENDPOINT}",
                "DS_LOG_LEVEL": "INFO",
                "DS_OUTBOX_LEASE_S": "3",
            },
            output=log_file,
        )
        try:
            await supervisor.start("api", "api", "--port", str(port))
            pool = [await supervisor.start(f"worker-{i}", "worker") for i in range(1, workers + 1)]
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base, key)
            steps.note(f"control plane ready at {base}")
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=70) as http:
                ok = await _conversation(http, supervisor, pool[0], steps)
        finally:
            await supervisor.stop()
    if ok:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"\nDemo passed in {time.monotonic() - steps.started:.1f} s.", flush=True)
        return 0
    print(f"\nDemo FAILED: see {log_path}", flush=True)
    return 1


async def _conversation(
    http: httpx.AsyncClient, supervisor: Supervisor, victim: Any, steps: _Steps
) -> bool:
    steps.step("Opening a Calculator session over REST: POST /v1/sessions")
    opened = await http.post("/v1/sessions", json={"contract": "Calculator", "endpoint": ENDPOINT})
    opened.raise_for_status()
    sid = opened.json()["id"]
    steps.note(f"session {sid} is {opened.json()['state']}")

    steps.step("Sending the first messages; each answer means the message is durable")
    seqs = await _send_all(http, sid, FIRST)
    steps.note(", ".join(f"{op} -> seq {s}" for (op, _), s in zip(FIRST, seqs, strict=True)))
    await http.get(f"/v1/sessions/{sid}/messages/{seqs[-1]}", params={"wait": 30})
    session = await _session(http, sid)
    steps.note(
        f"applied in order: last_applied_seq={session['last_applied_seq']}, "
        f"instance state {session['instance_state']}"
    )

    steps.step(
        f"Sending {len(SECOND)} more and killing {victim.name} (pid {victim.pid}) with SIGKILL"
    )
    sending = asyncio.create_task(_send_all(http, sid, SECOND))
    await asyncio.sleep(0.05)
    supervisor.kill(victim)
    steps.note(f"{victim.name} killed while messages were in flight")
    more = await sending
    await supervisor.wait_restarted(victim, 1)
    steps.note(f"{victim.name} restarted as pid {victim.pid}; sent seq {more[0]}..{more[-1]}")

    steps.step("Asking for the result with the terminating two-way operation equals()")
    (last,) = await _send_all(http, sid, [("equals", {})])
    message = (await http.get(f"/v1/sessions/{sid}/messages/{last}", params={"wait": 60})).json()
    steps.note(f"equals() -> {message['result']} ({message['status']})")

    steps.step("Checking the session")
    session = await _session(http, sid)
    counters = session["counters"]
    steps.note(
        f"state {session['state']}; sent {counters['sent']}, applied {counters['applied']}, "
        f"duplicates dropped {counters['duplicates']}, dead {counters['dead']}"
    )
    expected = _expected()
    right = (
        message["status"] == "applied"
        and abs(float(message["result"]) - expected) < 1e-9
        and session["state"] == "closed"
        and counters["applied"] == counters["sent"] == len(FIRST) + len(SECOND) + 1
    )
    steps.note(f"expected {expected}: {'correct' if right else 'WRONG'}")
    return right
