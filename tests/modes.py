"""A contract of each session mode with its services, for the binding tests, and the exact
refusal of each pairing of a service and a binding that cannot work.

Worker processes import the services by path (``tests.modes:TallyService``), so they live in a
module of their own.
"""

from __future__ import annotations

from typing import Protocol

import pytest
from pydantic import BaseModel

from durable_sessions import (
    Concurrency,
    Instancing,
    SessionMode,
    contract,
    operation,
    service,
)
from durable_sessions.model.endpoints import Binding


@contract
class Tally(Protocol):
    """SessionMode.ALLOWED (the default): in a session or as datagrams, as the client chooses."""

    @operation
    async def add(self, n: int) -> None: ...

    @operation
    async def total(self) -> int: ...


@service(Tally)
class TallyService(BaseModel):
    """PER_SESSION: a session keeps its count; a datagram is a call of its own (WCF's rule)."""

    count: int = 0

    async def add(self, n: int) -> None:
        self.count += n

    async def total(self) -> int:
        return self.count


@service(Tally, instancing=Instancing.PER_CALL)
class PerCallTallyService:
    """PER_CALL, which the datagram binding can carry."""

    async def add(self, n: int) -> None:
        return None

    async def total(self) -> int:
        return 0


@service(Tally, instancing=Instancing.PER_CALL, concurrency=Concurrency.MULTIPLE)
class ParallelTallyService:
    """PER_CALL and Concurrency.MULTIPLE: datagrams only, which may run at once."""

    async def add(self, n: int) -> None:
        return None

    async def total(self) -> int:
        return 0


@service(Tally, instancing=Instancing.SINGLE)
class SingleTallyService:
    """SINGLE: one instance, in one worker process, for every session and datagram."""

    def __init__(self) -> None:
        self.count = 0

    async def add(self, n: int) -> None:
        self.count += n

    async def total(self) -> int:
        return self.count


@contract(session_mode=SessionMode.REQUIRED)
class Ledger(Protocol):
    """SessionMode.REQUIRED: sessions only."""

    @operation
    async def post(self, amount: int) -> None: ...


@service(Ledger)
class LedgerService(BaseModel):
    balance: int = 0

    async def post(self, amount: int) -> None:
        self.balance += amount


@contract(session_mode=SessionMode.NOT_ALLOWED)
class Alerts(Protocol):
    """SessionMode.NOT_ALLOWED: datagrams only."""

    @operation
    async def raise_alert(self, text: str) -> None: ...


@service(Alerts)
class AlertsService:
    async def raise_alert(self, text: str) -> None:
        return None


def path_of(service_class: type) -> str:
    """The ``module:Service`` path a worker is given for ``service_class``."""
    return f"{__name__}:{service_class.__name__}"


def _not_allowed_on(binding: str) -> str:
    return (
        f"Contract does not allow Session, but Binding '{binding}' does not support Datagram or "
        "is not configured properly to support it. Serve contract 'Alerts' on the 'datagram' "
        "binding."
    )


MISMATCHES = [
    pytest.param(
        LedgerService,
        Binding.DATAGRAM,
        "Contract requires Session, but Binding 'datagram' doesn't support it or isn't "
        "configured properly to support it. Serve contract 'Ledger' on the 'queued-session' or "
        "'reliable-session' binding.",
        id="required-on-datagram",
    ),
    pytest.param(
        AlertsService,
        Binding.QUEUED_SESSION,
        _not_allowed_on("queued-session"),
        id="not-allowed-on-queued-session",
    ),
    pytest.param(
        AlertsService,
        Binding.RELIABLE_SESSION,
        _not_allowed_on("reliable-session"),
        id="not-allowed-on-reliable-session",
    ),
    pytest.param(
        TallyService,
        Binding.DATAGRAM,
        "service 'TallyService' uses Instancing.PER_SESSION, but the 'datagram' binding has no "
        "sessions, so every message would be a call of its own. Use Instancing.PER_CALL or "
        "Instancing.SINGLE, or the 'queued-session' binding.",
        id="per-session-on-datagram",
    ),
    pytest.param(
        ParallelTallyService,
        Binding.QUEUED_SESSION,
        "service 'ParallelTallyService' uses Concurrency.MULTIPLE, but the 'queued-session' "
        "binding carries sessions, whose messages apply one at a time in order. Use "
        "Concurrency.SINGLE, or serve it on the 'datagram' binding.",
        id="multiple-on-queued-session",
    ),
    pytest.param(
        ParallelTallyService,
        Binding.RELIABLE_SESSION,
        "service 'ParallelTallyService' uses Concurrency.MULTIPLE, but the 'reliable-session' "
        "binding carries sessions, whose messages apply one at a time in order. Use "
        "Concurrency.SINGLE, or serve it on the 'datagram' binding.",
        id="multiple-on-reliable-session",
    ),
]
"""``(service, binding, message)``: every refusal of the binding check, in its exact words."""
