"""B6: the control plane over many stored sessions: list a filtered first page, inspect one.

Sessions are bulk-inserted into a scratch PostgreSQL database, in a mix of states and contracts,
then the REST API (``create_app``, called in process through httpx's ASGI transport) is timed.
No message is sent, so the application gets the in-memory broker.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from api.app import create_app
from benchmarks.correctness import CorrectnessError
from benchmarks.infrastructure import BROKER_URL, insert_sessions, say, scratch_database
from benchmarks.recorder import SERVICE_PATH
from benchmarks.results import Database, Result
from benchmarks.stats import percentile
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.hosting.composition import build_store, served_endpoints
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import SessionRecord, new_id, utcnow
from durable_sessions.settings import Settings
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.store import SqlStore

API_KEY = "benchmark-key"
STATES = (
    *(SessionState.CLOSED,) * 6,
    SessionState.OPEN,
    SessionState.EXPIRED,
    SessionState.TERMINATED,
    SessionState.FAULTED,
)
"""One in ten sessions is open: a realistic history, mostly finished."""
OTHER_CONTRACT = "Archive"
PAGE = 50
WARM_UP_REQUESTS = 20


async def store_sessions(store: SqlStore, contract: str, endpoint: str, count: int) -> list[str]:
    """Insert ``count`` sessions, alternating contracts and cycling states; their ids."""
    now = utcnow()
    sessions = []
    for i in range(count):
        state = STATES[i % len(STATES)]
        sessions.append(
            SessionRecord(
                id=new_id(),
                contract=contract if i // len(STATES) % 2 else OTHER_CONTRACT,
                endpoint=endpoint,
                created_at=now,
                state=state,
                ended_at=now if state.is_final else None,
                last_activity_at=now,
                updated_at=now,
            )
        )
    await insert_sessions(store, sessions)
    async with store.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text(f"ANALYZE {schema.sessions.name}"))
    return [s.id for s in sessions]


async def _timed(http: httpx.AsyncClient, url: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await http.get(url)
    return (time.perf_counter() - started) * 1000, response


async def control_plane(sessions: int, requests: int, logs: Path) -> Result:
    """B6: p50/p95 of the first page of open sessions of a contract, and of one session."""
    async with scratch_database(Database.POSTGRESQL) as url:
        settings = Settings(
            database_url=url,
            broker_url=BROKER_URL,
            services=SERVICE_PATH,
            api_keys=API_KEY,
            api_keys_file=str(logs / "api-keys"),
        )
        endpoint = served_endpoints(settings)[0][0]
        contract = endpoint.contract.name
        store = build_store(settings)
        try:
            ids = await store_sessions(store, contract, endpoint.name, sessions)
            app = create_app(
                settings, endpoints=[endpoint], store=store, broker=MemoryNode().connect()
            )
            listing_url = f"/v1/sessions?state=open&contract={contract}&limit={PAGE}"
            chosen = random.Random(6)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://bench",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ) as http,
            ):
                for _ in range(WARM_UP_REQUESTS):
                    await http.get(listing_url)
                    await http.get(f"/v1/sessions/{chosen.choice(ids)}")
                listing, inspecting = [], []
                for _ in range(requests):
                    took, response = await _timed(http, listing_url)
                    _check_page(response, contract)
                    listing.append(took)
                    session_id = chosen.choice(ids)
                    took, response = await _timed(http, f"/v1/sessions/{session_id}")
                    if response.status_code != 200 or response.json()["id"] != session_id:
                        raise CorrectnessError(f"B6: inspecting {session_id} gave {response.text}")
                    inspecting.append(took)
        finally:
            await store.close()
    metrics = {
        "sessions_stored": float(sessions),
        "list_p50_ms": percentile(listing, 50),
        "list_p95_ms": percentile(listing, 95),
        "inspect_p50_ms": percentile(inspecting, 50),
        "inspect_p95_ms": percentile(inspecting, 95),
    }
    say(
        f"  B6 postgresql {sessions:,} sessions: list p95 {metrics['list_p95_ms']:.1f} ms, "
        f"inspect p95 {metrics['inspect_p95_ms']:.1f} ms"
    )
    return Result("B6", metrics, Database.POSTGRESQL)


def _check_page(response: httpx.Response, contract: str) -> None:
    if response.status_code != 200:
        raise CorrectnessError(f"B6: listing sessions gave {response.status_code}: {response.text}")
    items = response.json()["items"]
    wrong = [s for s in items if s["state"] != "open" or s["contract"] != contract]
    if len(items) != PAGE or wrong:
        raise CorrectnessError(f"B6: first page has {len(items)} sessions, {len(wrong)} unfiltered")
