"""Endpoints: which binding carries which session mode, each refusal's exact words, and what
an endpoint takes."""

from __future__ import annotations

import pytest

from durable_sessions.errors import BindingMismatch, ConfigurationError
from durable_sessions.model.endpoints import Binding, Endpoint
from durable_sessions.model.services import service_of
from tests.modes import (
    MISMATCHES,
    AlertsService,
    LedgerService,
    ParallelTallyService,
    PerCallTallyService,
    SingleTallyService,
    TallyService,
)


@pytest.mark.parametrize(("service", "binding", "message"), MISMATCHES)
def test_each_binding_mismatch_is_refused_in_wcf_words(
    service: type, binding: Binding, message: str
) -> None:
    with pytest.raises(BindingMismatch) as refused:
        Endpoint.for_service(service_of(service), binding=binding)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("service", "binding"),
    [
        (LedgerService, Binding.QUEUED_SESSION),
        (LedgerService, Binding.RELIABLE_SESSION),
        (AlertsService, Binding.DATAGRAM),
        (TallyService, Binding.QUEUED_SESSION),
        (TallyService, Binding.RELIABLE_SESSION),
        (PerCallTallyService, Binding.DATAGRAM),
        (ParallelTallyService, Binding.DATAGRAM),
        (SingleTallyService, Binding.QUEUED_SESSION),
        (SingleTallyService, Binding.DATAGRAM),
    ],
)
def test_every_other_pairing_is_accepted(service: type, binding: Binding) -> None:
    assert Endpoint.for_service(service_of(service), binding=binding).binding is binding


@pytest.mark.parametrize(
    ("service", "binding", "sessions", "datagrams"),
    [
        (LedgerService, None, True, False),
        (AlertsService, None, False, True),
        (TallyService, None, True, True),
        (TallyService, Binding.RELIABLE_SESSION, True, True),
        (PerCallTallyService, Binding.DATAGRAM, False, True),
        (ParallelTallyService, None, False, True),
    ],
)
def test_an_allowed_contract_on_a_sessionful_binding_takes_sessions_and_datagrams(
    service: type, binding: Binding | None, sessions: bool, datagrams: bool
) -> None:
    endpoint = Endpoint.for_service(service_of(service), binding=binding)
    assert (endpoint.accepts_sessions, endpoint.accepts_datagrams) == (sessions, datagrams)


def test_bindings_are_named_as_in_configuration() -> None:
    assert Binding.named(" Queued-Session ") is Binding.QUEUED_SESSION
    with pytest.raises(ConfigurationError) as refused:
        Binding.named("netMsmq")
    assert str(refused.value) == (
        "unknown binding 'netMsmq': use one of 'datagram', 'queued-session', 'reliable-session'"
    )
