"""Bindings chosen in ``DS_SERVICES`` and on the command line, checked when a worker starts; an
ALLOWED contract served to a session client and a datagram client by a real worker process."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from durable_sessions.engine.sending import SendRequest
from durable_sessions.errors import BindingMismatch, ConfigurationError
from durable_sessions.hosting.composition import connect_client, served_endpoints
from durable_sessions.model.endpoints import Binding
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import MessageStatus
from durable_sessions.model.topology import EndpointTopology
from durable_sessions.settings import Settings
from tests.e2e.processes import REPO, Proc, child_env
from tests.modes import (
    MISMATCHES,
    AlertsService,
    LedgerService,
    PerCallTallyService,
    Tally,
    TallyService,
    path_of,
)
from tests.services import BROKER_URL, require
from tests.stacks import delete_topology

TALLY = path_of(TallyService)


def endpoints_of(services: str) -> list[tuple[str, Binding]]:
    return [(e.name, e.binding) for e, _ in served_endpoints(Settings(services=services))]


def test_each_entry_of_ds_services_names_its_endpoint_and_binding() -> None:
    services = ",".join(
        [
            f"{TALLY}@tally-q:queued-session",
            f"{TALLY}@tally-r:reliable-session",
            f"{path_of(PerCallTallyService)}@:datagram",
            f"{path_of(LedgerService)}@ledger",
            path_of(AlertsService),
        ]
    )
    assert endpoints_of(services) == [
        ("tally-q", Binding.QUEUED_SESSION),
        ("tally-r", Binding.RELIABLE_SESSION),
        ("tally", Binding.DATAGRAM),
        ("ledger", Binding.QUEUED_SESSION),
        ("alerts", Binding.DATAGRAM),
    ]


def test_the_binding_flag_overrides_the_entry_of_one_service() -> None:
    settings = Settings(services=f"{path_of(PerCallTallyService)}@tally:queued-session")
    ((endpoint, _),) = served_endpoints(settings, binding=Binding.DATAGRAM)
    assert (endpoint.name, endpoint.binding) == ("tally", Binding.DATAGRAM)
    with pytest.raises(ConfigurationError, match="--binding names the binding of exactly one"):
        served_endpoints(settings, [TALLY, path_of(LedgerService)], binding=Binding.DATAGRAM)


def test_an_unknown_binding_in_ds_services_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        endpoints_of(f"{TALLY}@tally:msmq")
    assert str(refused.value) == (
        "unknown binding 'msmq': use one of 'datagram', 'queued-session', 'reliable-session'"
    )


@pytest.mark.parametrize(("service", "binding", "message"), MISMATCHES)
def test_ds_services_cannot_pair_a_contract_with_a_binding_it_cannot_use(
    service: type, binding: Binding, message: str
) -> None:
    with pytest.raises(BindingMismatch) as refused:
        endpoints_of(f"{path_of(service)}@checked:{binding}")
    assert str(refused.value) == message


def start_worker(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=child_env(DS_BROKER_URL=BROKER_URL, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.parametrize(("service", "binding", "message"), MISMATCHES)
def test_a_worker_process_refuses_to_start_on_a_mismatched_binding(
    service: type, binding: Binding, message: str
) -> None:
    worker = start_worker("-m", "workers", DS_SERVICES=f"{path_of(service)}@checked:{binding}")
    assert (worker.returncode, worker.stderr.splitlines()[-1]) == (1, f"error: {message}")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "command", [["-m", "workers"], ["-m", "durable_sessions", "worker"]], ids=["python-m", "cli"]
)
def test_the_worker_binding_flag_is_checked(command: list[str]) -> None:
    worker = start_worker(*command, "--service", path_of(LedgerService), "--binding", "datagram")
    (_, _, message, *_) = MISMATCHES[0].values
    assert (worker.returncode, worker.stderr.splitlines()[-1]) == (1, f"error: {message}")


@pytest.mark.e2e
@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
async def test_a_worker_serves_an_allowed_contract_to_sessions_and_datagrams(
    sqlite_url: str, tmp_path: Path
) -> None:
    require("RabbitMQ", BROKER_URL, 5672)
    endpoint = f"tally-{uuid.uuid4().hex[:8]}"
    services = f"{TALLY}@{endpoint}:queued-session"
    settings = Settings(database_url=sqlite_url, broker_url=BROKER_URL, services=services)
    topology = EndpointTopology(endpoint)
    worker = Proc(
        "worker",
        [sys.executable, "-m", "workers"],
        child_env(DS_DATABASE_URL=sqlite_url, DS_BROKER_URL=BROKER_URL, DS_SERVICES=services),
        tmp_path / "worker.log",
    )
    try:
        worker.start()
        await worker.logged(
            f"on endpoint '{endpoint}' (queued-session binding: sessions and datagrams)"
        )
        async with connect_client(settings) as client:
            session = client.session(Tally)
            async with session as tally:
                await tally.add(2)
                await tally.add(3)
                assert await tally.total() == 5
            served = client.endpoints[endpoint]
            sent = await client.send(SendRequest(served, None, "add", {"n": 7}))
            datagram = await client.wait(sent.message.message_id)
            # PER_SESSION outside a session is a call of its own, as in WCF: a fresh instance.
            assert await client.datagrams(Tally).total() == 0
            async with client.store.snapshot() as uow:
                record = await uow.sessions.get(session.id)
        assert (datagram.status, datagram.session_id, datagram.seq) == (
            MessageStatus.APPLIED,
            None,
            None,
        )
        assert record is not None
        assert (record.state, record.applied_count) == (SessionState.CLOSED, 3)
        assert await worker.stop() == 0
    finally:
        worker.kill()
        await delete_topology(topology)
