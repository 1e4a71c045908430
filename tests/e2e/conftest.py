"""A run of the end-to-end tests: a fresh database, an endpoint of its own, real processes.

Each test gets a database nobody else uses (a new PostgreSQL database ``ds_e2e_<uuid>``, or a
new SQLite file shared by its processes) and an endpoint named with a uuid suffix, so it can
share RabbitMQ and PostgreSQL with other users. Afterwards every process is killed, the queues
and exchanges are deleted and the database is dropped. A failed test shows the end of every
process's log and the seed that replays it (``DS_E2E_SEED``).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from durable_sessions.model.topology import EndpointTopology
from durable_sessions.store.sql import migrate
from durable_sessions.store.sql.store import SqlStore
from tests.conftest import _admin
from tests.e2e.checks import Verdict, all_applied, settled, verify
from tests.e2e.faults import ensure_up, queue_depths, require_rabbitmq_control
from tests.e2e.journal import SERVICE_PATH
from tests.e2e.plan import Plan
from tests.e2e.processes import Fleet, child_env
from tests.services import BROKER_URL, POSTGRES_ADMIN_URL, require
from tests.stacks import delete_topology

LEASE_S = 2.0
"""The relays' claim on outbox entries: short, so a dead relay's entries go out soon."""

POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")
SQLITE = pytest.param("sqlite", id="sqlite")
"""Parameters of the ``run`` fixture (``indirect=True``): the database the processes share."""

_FLEET = pytest.StashKey["Fleet"]()
_SEED = pytest.StashKey[int]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[Any]:
    """Add the seed and the process logs to the report of a failed end-to-end test."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and _SEED in item.stash:
        seed = item.stash[_SEED]
        report.sections.append(("e2e seed", f"replay with DS_E2E_SEED={seed}"))
        if _FLEET in item.stash:
            report.sections.append(("e2e process logs", item.stash[_FLEET].report()))


@dataclass
class Run:
    """One end-to-end run: its database, endpoint, processes and random choices."""

    kind: str
    url: str
    store: SqlStore
    fleet: Fleet
    seed: int
    directory: Path
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def endpoint(self) -> str:
        """The endpoint of the run."""
        return self.fleet.endpoint

    @property
    def topology(self) -> EndpointTopology:
        """Its queues and exchanges (the workers' default of four session queues)."""
        return EndpointTopology(self.endpoint)

    def plan(self, sessions: int, writes: int) -> tuple[Plan, Path]:
        """A random plan of ``sessions`` x ``writes``, saved for sender processes."""
        plan = Plan.random(self.rng, self.endpoint, sessions, writes)
        return plan, plan.save(self.directory / "plan.json")

    async def finish(self, plan: Plan, within_s: float = 120.0) -> Verdict:
        """Wait until the plan is applied and everything settled, stop the workers, verify."""
        await all_applied(self.store, plan, within_s)
        await settled(self.store, self.topology, within_s)
        repaired = [w.name for w in self.fleet.workers if w.count("made no progress")]
        assert not repaired, f"the sweepers of {repaired} republished stalled sessions"
        codes = await self.fleet.stop_workers()
        assert codes, "no worker was running at the end"
        assert all(code == 0 for code in codes), f"workers stopped with {codes}"
        verdict = await verify(self.store, plan)
        depths = await queue_depths(self.topology)
        assert depths, f"no queues of {self.endpoint} on the broker"
        assert all(depth == (0, 0) for depth in depths.values()), depths
        return verdict


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of the run's random choices: ``DS_E2E_SEED``, or a new one that is printed."""
    chosen = int(os.environ.get("DS_E2E_SEED") or random.SystemRandom().randrange(1 << 32))
    request.node.stash[_SEED] = chosen
    print(f"e2e seed {chosen} (replay with DS_E2E_SEED={chosen})")
    return chosen


async def _fresh_postgres() -> tuple[str, str]:
    name = f"ds_e2e_{uuid.uuid4().hex}"
    await _admin(f'CREATE DATABASE "{name}"')
    return name, POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=[POSTGRES])
async def run(request: pytest.FixtureRequest, seed: int, tmp_path: Path) -> AsyncIterator[Run]:
    """A run on PostgreSQL (parametrize ``run`` indirectly with ``"sqlite"`` for SQLite)."""
    require("RabbitMQ", BROKER_URL, 5672)
    require_rabbitmq_control()
    database: str | None = None
    if request.param == "postgres":
        require("PostgreSQL", POSTGRES_ADMIN_URL, 5432)
        database, url = await _fresh_postgres()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    endpoint = f"journal-{uuid.uuid4().hex[:12]}"
    store: SqlStore | None = None
    fleet: Fleet | None = None
    try:
        await migrate.upgrade(url)
        store = SqlStore.from_url(url)
        env = child_env(
            DS_DATABASE_URL=url,
            DS_BROKER_URL=BROKER_URL,
            DS_SERVICES=SERVICE_PATH,
            DS_OUTBOX_LEASE_S=str(LEASE_S),
            DS_OUTBOX_POLL_INTERVAL_S="0.2",
            DS_SWEEP_INTERVAL_S="0.5",
            DS_LOG_LEVEL="INFO",
        )
        fleet = Fleet(tmp_path, env, endpoint)
        request.node.stash[_FLEET] = fleet
        yield Run(request.param, url, store, fleet, seed, tmp_path)
    finally:
        if fleet is not None:
            fleet.kill_all()
        await asyncio.to_thread(ensure_up)
        if store is not None:
            await store.close()
        await delete_topology(EndpointTopology(endpoint))
        if database is not None:
            await _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
