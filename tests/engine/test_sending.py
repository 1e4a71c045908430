"""The send path refuses what an endpoint's session mode and binding cannot carry, and says what
to do instead; an ALLOWED contract on a sessionful binding takes both."""

from __future__ import annotations

import pytest

from durable_sessions.engine.client import Client
from durable_sessions.engine.sending import SendRequest
from durable_sessions.errors import ConfigurationError, SessionsNotAllowed
from durable_sessions.model.endpoints import Binding, Endpoint, Endpoints
from durable_sessions.model.services import service_of
from durable_sessions.store.memory import MemoryStore
from tests.modes import (
    Alerts,
    AlertsService,
    Ledger,
    LedgerService,
    PerCallTallyService,
    Tally,
    TallyService,
)


def client_of(service: type, binding: Binding | None = None) -> Client:
    endpoint = Endpoint.for_service(service_of(service), binding=binding)
    return Client(MemoryStore(), Endpoints([endpoint]))


async def test_a_contract_that_requires_sessions_takes_no_datagram() -> None:
    with pytest.raises(ConfigurationError) as refused:
        await client_of(LedgerService).datagrams(Ledger).post(1)
    assert str(refused.value) == (
        "contract 'Ledger' requires sessions (SessionMode.REQUIRED): open a session on endpoint "
        "'ledger' to call 'post'"
    )


async def test_a_contract_that_does_not_allow_sessions_opens_none() -> None:
    with pytest.raises(SessionsNotAllowed) as refused:
        await client_of(AlertsService).session(Alerts).open()
    assert str(refused.value) == (
        "contract 'Alerts' does not allow sessions (SessionMode.NOT_ALLOWED): send datagrams to "
        "endpoint 'alerts' instead"
    )


async def test_an_allowed_contract_on_the_datagram_binding_opens_no_session() -> None:
    client = client_of(PerCallTallyService, Binding.DATAGRAM)
    with pytest.raises(SessionsNotAllowed) as refused:
        await client.session(Tally).open()
    assert str(refused.value) == (
        "endpoint 'tally' serves contract 'Tally' on the 'datagram' binding, which has no "
        "sessions: send datagrams, or serve the contract on the 'queued-session' binding"
    )
    assert await client.datagrams(Tally).add(1) is None


@pytest.mark.parametrize("binding", [Binding.QUEUED_SESSION, Binding.RELIABLE_SESSION])
async def test_an_allowed_contract_on_a_sessionful_binding_takes_both(binding: Binding) -> None:
    client = client_of(TallyService, binding)
    endpoint = client.endpoints["tally"]
    context = client.session(Tally)
    await context.open()
    in_session = await client.send(SendRequest(endpoint, context.id, "add", {"n": 1}))
    datagram = await client.send(SendRequest(endpoint, None, "add", {"n": 2}))
    assert [(sent.message.session_id, sent.message.seq) for sent in (in_session, datagram)] == [
        (context.id, 1),
        (None, None),
    ]
    assert [sent.outbox.routing_key for sent in (in_session, datagram) if sent.outbox] == [
        endpoint.topology.session_routing_key(context.id),
        "datagram",
    ]
