"""``durable-sessions up``: the whole service on one machine, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from durable_sessions.cli.supervisor import Supervisor
from durable_sessions.errors import SingletonInUse
from durable_sessions.hosting.apikeys import ensure_api_key
from durable_sessions.hosting.composition import served_endpoints
from durable_sessions.hosting.metrics import MULTIPROCESS_ENV
from durable_sessions.hosting.tls import server_tls
from durable_sessions.model.services import Instancing
from durable_sessions.settings import Settings, redact_url
from durable_sessions.store.sql import migrate

log = logging.getLogger("durable_sessions.up")


def api_key_for(settings: Settings, say: bool = True) -> str:
    """The key clients use: ``DS_API_KEYS``'s first, else the key file's (made once)."""
    configured = settings.api_key_list()
    if configured:
        return configured[0]
    path = Path(settings.api_keys_file)
    key, created = ensure_api_key(path)
    if created and say:
        print(
            f"Generated an API key, saved in {path} (mode 0600). It is shown this once:\n\n"
            f"    {key}\n\nSend it as 'Authorization: Bearer <key>'.\n",
            flush=True,
        )
    return key


async def wait_ready(
    url: str, key: str, timeout_s: float = 60.0, verify: ssl.SSLContext | bool = True
) -> None:
    """Wait until the control plane at ``url`` answers ``/readyz`` with 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, verify=verify) as http:
        while True:
            try:
                if (await http.get("/readyz", timeout=2.0)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"the control plane at {url} did not become ready")
            await asyncio.sleep(0.2)


def fresh_metrics_dir() -> Path:
    """An empty folder where every process of this machine keeps its metrics."""
    path = Path(".ds/metrics").resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def check_single_services(settings: Settings, workers: int, services: Sequence[str]) -> None:
    """Refuse several workers for a SINGLE service: its one instance lives in one process."""
    single = [
        spec.name
        for _, spec in served_endpoints(settings, services)
        if spec.instancing is Instancing.SINGLE
    ]
    if workers > 1 and single:
        raise SingletonInUse(
            f"service {single[0]!r} uses Instancing.SINGLE (one instance for all calls), which "
            f"one worker process serves, so `up --workers {workers}` would leave the others "
            "refusing to start: run `up --workers 1`, or use Instancing.PER_SESSION or "
            "Instancing.PER_CALL to serve it from many."
        )


async def run_up(
    settings: Settings,
    port: int,
    workers: int,
    services: list[str],
    throttles: Mapping[str, int] | None = None,
) -> None:
    """Migrate, then run the API and ``workers`` worker processes until SIGINT or SIGTERM.

    ``throttles`` are the ``Settings`` fields given as flags, passed on to every worker.
    """
    check_single_services(settings, workers, services)
    tls = server_tls(settings)
    url = settings.database_url
    print(f"migrating {redact_url(url)} ...", flush=True)
    await migrate.upgrade(url)
    key = api_key_for(settings)
    metrics_dir = fresh_metrics_dir()
    env = {"DS_API_KEYS": key, MULTIPROCESS_ENV: str(metrics_dir)}
    if services:
        env["DS_SERVICES"] = ",".join(services)
    env.update({f"DS_{name.upper()}": str(value) for name, value in (throttles or {}).items()})
    if settings.reliable_sessions:
        env["DS_RELIABLE_SESSIONS"] = settings.reliable_sessions
    if tls is not None:
        env.update(DS_TLS_CERT=tls.cert, DS_TLS_KEY=tls.key)
    supervisor = Supervisor(env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await supervisor.start("api", "api", "--host", settings.api_host, "--port", str(port))
        for number in range(1, workers + 1):
            await supervisor.start(f"worker-{number}", "worker")
        base = f"{'https' if tls else 'http'}://{settings.api_host}:{port}"
        verify = tls.pinned_context() if tls else True
        waiting = asyncio.create_task(wait_ready(base, key, verify=verify))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done() and waiting.exception() is None:
            print(
                f"\ndurable-sessions is up: control plane {base} (dashboard at {base}/ui/, API "
                f"docs at {base}/docs), "
                f"{workers} worker(s), database {redact_url(url)}, broker "
                f"{redact_url(settings.broker_url)}. Ctrl-C stops everything.\n",
                flush=True,
            )
        while not stop.is_set():
            failing = supervisor.failed_early()
            if failing is not None:
                raise SystemExit(f"{failing.name} keeps failing; see its log above")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()
        waiting.cancel()
        print("\nstopping: letting workers finish their batches ...", flush=True)
    finally:
        await supervisor.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    print("stopped", flush=True)
