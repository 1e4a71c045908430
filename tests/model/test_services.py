"""Service declarations: handlers match the contract, instancing and concurrency make sense."""

from __future__ import annotations

from typing import Protocol

import pytest
from pydantic import BaseModel

from durable_sessions.errors import ConfigurationError, ServiceError
from durable_sessions.examples.calculator import Calculator, CalculatorService
from durable_sessions.model.contracts import SessionMode, contract, contract_of, operation
from durable_sessions.model.services import (
    Concurrency,
    Instancing,
    load_service,
    service,
    service_of,
)


@contract
class Counter(Protocol):
    @operation
    async def add(self, n: int) -> None: ...

    @operation
    async def total(self) -> int: ...


@contract(session_mode=SessionMode.NOT_ALLOWED)
class Notify(Protocol):
    @operation
    async def send(self, text: str) -> None: ...


async def test_calculator_keeps_its_result_as_instance_state() -> None:
    spec = service_of(CalculatorService)
    assert (spec.instancing, spec.concurrency) == (Instancing.PER_SESSION, Concurrency.SINGLE)
    ops = spec.contract.operations
    instance = spec.new_instance()
    await spec.invoke(instance, ops["clear"], {})
    await spec.invoke(instance, ops["add_to"], {"n": 5})
    saved = spec.snapshot(instance)
    assert saved == {"result": 5.0}
    restored = spec.restore(saved)
    await spec.invoke(restored, ops["multiply_by"], {"n": 3})
    assert await spec.invoke(restored, ops["equals"], {}) == 15.0
    with pytest.raises(ZeroDivisionError):
        await spec.invoke(restored, ops["divide_by"], {"n": 0})
    assert spec.restore(None) == CalculatorService()


async def test_an_overflowed_instance_state_is_saved_as_infinity_not_null() -> None:
    spec = service_of(CalculatorService)
    ops = spec.contract.operations
    instance = spec.new_instance()
    await spec.invoke(instance, ops["add_to"], {"n": 1e308})
    await spec.invoke(instance, ops["multiply_by"], {"n": 10})
    saved = spec.snapshot(instance)
    assert saved == {"result": "Infinity"}
    assert await spec.invoke(spec.restore(saved), ops["equals"], {}) == "Infinity"


def test_default_instancing_depends_on_the_session_mode() -> None:
    @service(Notify)
    class Notifier:
        async def send(self, text: str) -> None:
            return None

    assert service_of(Notifier).instancing is Instancing.PER_CALL
    assert service_of(Notifier).snapshot(Notifier()) is None


def test_missing_handler_is_named_with_its_signature() -> None:
    with pytest.raises(ServiceError) as raised:

        @service(Counter)
        class Partial(BaseModel):
            async def add(self, n: int) -> None:
                return None

    assert "no handler for operation 'total'" in str(raised.value)
    assert "async def total(self)" in str(raised.value)


def test_extra_handler_is_refused() -> None:
    with pytest.raises(ServiceError, match=r"defines handler 'reset', which is not an operation"):

        @service(Counter)
        class Extra(BaseModel):
            async def add(self, n: int) -> None:
                return None

            async def total(self) -> int:
                return 0

            async def reset(self) -> None:
                return None


def test_private_helpers_and_sync_methods_are_fine() -> None:
    @service(Counter)
    class Helpful(BaseModel):
        value: int = 0

        async def add(self, n: int) -> None:
            await self._log(n)
            self.value += n

        async def total(self) -> int:
            return self.describe_total()

        async def _log(self, n: int) -> None:
            return None

        def describe_total(self) -> int:
            return self.value

    assert service_of(Helpful).name == "Helpful"


def test_handlers_must_be_async() -> None:
    with pytest.raises(ServiceError, match=r"must be async: declare it as `async def add"):

        @service(Counter)
        class Blocking(BaseModel):
            def add(self, n: int) -> None:
                return None

            async def total(self) -> int:
                return 0


def test_handler_parameters_must_match() -> None:
    with pytest.raises(ServiceError, match=r"takes \(amount\) but the operation declares \(n\)"):

        @service(Counter)
        class Renamed(BaseModel):
            async def add(self, amount: int) -> None:
                return None

            async def total(self) -> int:
                return 0


def test_per_session_state_must_be_a_pydantic_model() -> None:
    with pytest.raises(ServiceError, match=r"make it a pydantic model"):

        @service(Counter)
        class Plain:
            async def add(self, n: int) -> None:
                return None

            async def total(self) -> int:
                return 0


def test_per_session_state_needs_defaults() -> None:
    with pytest.raises(ServiceError, match=r"'owner' need default values"):

        @service(Counter)
        class Owned(BaseModel):
            owner: str

            async def add(self, n: int) -> None:
                return None

            async def total(self) -> int:
                return 0


def test_per_session_needs_sessions() -> None:
    with pytest.raises(ServiceError, match=r"does not allow sessions.*PER_CALL"):

        @service(Notify, instancing=Instancing.PER_SESSION)
        class Notifier(BaseModel):
            async def send(self, text: str) -> None:
                return None


def test_per_call_services_need_a_no_argument_constructor() -> None:
    with pytest.raises(ServiceError, match=r"constructible without arguments.*'client'"):

        @service(Notify)
        class Notifier:
            def __init__(self, client: object) -> None:
                self.client = client

            async def send(self, text: str) -> None:
                return None


def test_multiple_concurrency_is_for_datagrams_only() -> None:
    with pytest.raises(ServiceError) as required:

        @service(Calculator, concurrency=Concurrency.MULTIPLE)
        class Fast(CalculatorService):
            pass

    assert str(required.value) == (
        "service 'Fast' uses Concurrency.MULTIPLE, but contract 'Calculator' requires "
        "sessions, whose messages apply one at a time in order. Use Concurrency.SINGLE, or "
        "serve a contract that allows datagrams on the datagram binding."
    )

    @service(Notify, concurrency=Concurrency.MULTIPLE)
    class Parallel:
        async def send(self, text: str) -> None:
            return None

    assert service_of(Parallel).concurrency is Concurrency.MULTIPLE


def test_multiple_concurrency_cannot_share_a_per_session_instance() -> None:
    # WCF's durable services refuse ConcurrencyMode.Multiple: the saved state is per message.
    with pytest.raises(ServiceError) as refused:

        @service(Counter, concurrency=Concurrency.MULTIPLE)
        class Parallel(BaseModel):
            count: int = 0

            async def add(self, n: int) -> None:
                self.count += n

            async def total(self) -> int:
                return self.count

    assert str(refused.value) == (
        "service 'Parallel' uses Concurrency.MULTIPLE with Instancing.PER_SESSION, but a "
        "session's instance state is restored before each message and saved after it, one "
        "message at a time in order (as WCF's durable services refuse "
        "ConcurrencyMode.Multiple). Use Concurrency.SINGLE, or Instancing.PER_CALL or "
        "Instancing.SINGLE."
    )


def test_service_of_and_load_service() -> None:
    spec = load_service("durable_sessions.examples.calculator:CalculatorService")
    assert spec is service_of(CalculatorService)
    assert spec.path == "durable_sessions.examples.calculator:CalculatorService"
    assert spec.contract is contract_of(Calculator)
    with pytest.raises(ServiceError, match="is not a service"):
        service_of(Calculator)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "must look like"),
        ("no_such_module_xyz:Service", "cannot import"),
        ("durable_sessions.examples.calculator:Nope", "has no 'Nope'"),
    ],
)
def test_load_service_explains_bad_paths(path: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_service(path)
