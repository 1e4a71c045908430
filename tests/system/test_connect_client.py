"""``connect_client``: a Python client from settings, against a worker on SQLite and RabbitMQ."""

from __future__ import annotations

import uuid

import pytest

from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples.calculator import Calculator
from durable_sessions.hosting.composition import (
    build_store,
    connect_broker,
    connect_client,
    served_endpoints,
)
from durable_sessions.settings import Settings
from tests.services import BROKER_URL, require
from tests.stacks import delete_topology

pytestmark = pytest.mark.rabbitmq


async def test_a_client_from_settings_runs_a_calculator_session(sqlite_url: str) -> None:
    require("RabbitMQ", BROKER_URL, 5672)
    endpoint = f"calc-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=sqlite_url,
        broker_url=BROKER_URL,
        services=f"durable_sessions.examples.calculator:CalculatorService@{endpoint}",
    )
    served = served_endpoints(settings)
    store, broker = build_store(settings), await connect_broker(settings)
    try:
        async with (
            Runtime(store, broker, served, sweep_interval_s=0.1),
            connect_client(settings) as client,
        ):
            calc_session = client.session(Calculator, labels={"from": "settings"})
            async with calc_session as calc:
                await calc.clear()
                await calc.add_to(20)
                await calc.add_to(22)
                assert await calc.equals() == 42.0
    finally:
        await broker.close()
        await store.close()
        await delete_topology(served[0][0].topology)
