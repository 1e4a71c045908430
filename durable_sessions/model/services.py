"""Services: user classes that implement a contract, with WCF's instancing and concurrency.

``@service(Contract)`` checks, when the class is defined, that every operation has an async
handler of the same name and parameters and that nothing else looks like a handler. With
``Instancing.PER_SESSION`` (the default for contracts that use sessions) the service class is a
pydantic model: its fields are the session's instance state, saved with the session after every
message and restored before the next, so a crash loses nothing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel

from durable_sessions.errors import ConfigurationError, ServiceError
from durable_sessions.model.contracts import (
    ContractSpec,
    OperationSpec,
    SessionMode,
    contract_of,
    json_value,
)

T = TypeVar("T")

_SERVICE_ATTR = "__ds_service__"


class Instancing(StrEnum):
    """How many service instances serve the calls (WCF ``InstanceContextMode``)."""

    PER_SESSION = "per_session"
    PER_CALL = "per_call"
    SINGLE = "single"


class Concurrency(StrEnum):
    """How many calls one instance may run at once (WCF ``ConcurrencyMode``)."""

    SINGLE = "single"
    MULTIPLE = "multiple"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A declared service: its class, contract, instancing and concurrency."""

    cls: type = field(repr=False)
    name: str
    contract: ContractSpec
    instancing: Instancing
    concurrency: Concurrency

    @property
    def path(self) -> str:
        """The ``module:Class`` path that :func:`load_service` accepts."""
        return f"{self.cls.__module__}:{self.cls.__qualname__}"

    def new_instance(self) -> Any:
        """A fresh instance, as the initiating call of a session (or any PER_CALL call) gets."""
        return self.cls()

    def restore(self, state: Mapping[str, Any] | None) -> Any:
        """A PER_SESSION instance rebuilt from its saved state (fresh when there is none)."""
        if state is None:
            return self.new_instance()
        model: type[BaseModel] = self.cls
        return model.model_validate(dict(state))

    def snapshot(self, instance: Any) -> dict[str, Any] | None:
        """The instance state to save with the session (None unless PER_SESSION)."""
        if self.instancing is not Instancing.PER_SESSION:
            return None
        state: dict[str, Any] = json_value(instance.model_dump(mode="json"))
        return state

    async def invoke(self, instance: Any, operation: OperationSpec, args: Mapping[str, Any]) -> Any:
        """Call the handler of ``operation`` with stored JSON ``args``; return a JSON result."""
        handler: Callable[..., Any] = getattr(instance, operation.name)
        value = await handler(**operation.load_args(args))
        return operation.dump_result(value)


def service(
    contract: type,
    *,
    instancing: Instancing | None = None,
    concurrency: Concurrency = Concurrency.SINGLE,
    name: str | None = None,
) -> Callable[[type[T]], type[T]]:
    """Declare a class as the implementation of ``contract``.

    ``instancing`` defaults to PER_SESSION, or PER_CALL when the contract does not allow
    sessions (each message is then a call of its own).
    """
    spec = contract_of(contract)

    def declare(cls: type[T]) -> type[T]:
        mode = instancing or (
            Instancing.PER_CALL
            if spec.session_mode is SessionMode.NOT_ALLOWED
            else Instancing.PER_SESSION
        )
        service_spec = ServiceSpec(
            cls=cls,
            name=name or cls.__name__,
            contract=spec,
            instancing=Instancing(mode),
            concurrency=Concurrency(concurrency),
        )
        _check_modes(service_spec)
        _check_handlers(service_spec)
        setattr(cls, _SERVICE_ATTR, service_spec)
        return cls

    return declare


def service_of(obj: object) -> ServiceSpec:
    """The :class:`ServiceSpec` of a service class, or a :class:`ServiceError`."""
    spec = getattr(obj, _SERVICE_ATTR, None)
    if not isinstance(spec, ServiceSpec) or spec.cls is not obj:
        shown = getattr(obj, "__name__", repr(obj))
        raise ServiceError(f"{shown} is not a service: decorate its class with @service(Contract)")
    return spec


def load_service(path: str) -> ServiceSpec:
    """Import a service from ``"package.module:ClassName"``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"service path must look like 'package.module:Service', not {path!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigurationError(f"cannot import {module_name!r} for service {path!r}: {e}") from e
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no {attr!r}") from None
    return service_of(target)


def _check_modes(spec: ServiceSpec) -> None:
    where = f"service {spec.name!r}"
    if spec.instancing is Instancing.PER_SESSION:
        if spec.contract.session_mode is SessionMode.NOT_ALLOWED:
            raise ServiceError(
                f"{where} uses Instancing.PER_SESSION, but contract {spec.contract.name!r} does "
                "not allow sessions, so every message is a call of its own. Use "
                "Instancing.PER_CALL or Instancing.SINGLE."
            )
        if not (isinstance(spec.cls, type) and issubclass(spec.cls, BaseModel)):
            raise ServiceError(
                f"{where} uses Instancing.PER_SESSION, whose instance state is saved with the "
                f"session: make it a pydantic model (class {spec.cls.__name__}(BaseModel)) whose "
                "fields are that state, or use Instancing.PER_CALL."
            )
        required = [n for n, f in spec.cls.model_fields.items() if f.is_required()]
        if required:
            raise ServiceError(
                f"{where}: state field(s) {', '.join(map(repr, required))} need default values; "
                "a new session starts from a fresh instance"
            )
    else:
        required_params = [
            p.name
            for p in inspect.signature(spec.cls).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if required_params:
            raise ServiceError(
                f"{where} must be constructible without arguments, but needs "
                f"{', '.join(map(repr, required_params))}"
            )
    if spec.concurrency is not Concurrency.MULTIPLE:
        return
    if spec.contract.session_mode is SessionMode.REQUIRED:
        raise ServiceError(
            f"{where} uses Concurrency.MULTIPLE, but contract {spec.contract.name!r} requires "
            "sessions, whose messages apply one at a time in order. Use Concurrency.SINGLE, or "
            "serve a contract that allows datagrams on the datagram binding."
        )
    if spec.instancing is Instancing.PER_SESSION:
        raise ServiceError(
            f"{where} uses Concurrency.MULTIPLE with Instancing.PER_SESSION, but a session's "
            "instance state is restored before each message and saved after it, one message "
            "at a time in order (as WCF's durable services refuse ConcurrencyMode.Multiple). "
            "Use Concurrency.SINGLE, or Instancing.PER_CALL or Instancing.SINGLE."
        )


def _check_handlers(spec: ServiceSpec) -> None:
    contract = spec.contract
    for op in contract.operations.values():
        handler = getattr(spec.cls, op.name, None)
        params = ", ".join(["self", *(str(p) for p in op.signature.parameters.values())])
        wanted = f"async def {op.name}({params})"
        if handler is None:
            raise ServiceError(
                f"service {spec.name!r} has no handler for operation {op.name!r} of contract "
                f"{contract.name!r}: add `{wanted}`"
            )
        if not inspect.iscoroutinefunction(handler):
            raise ServiceError(
                f"handler {spec.name}.{op.name} must be async: declare it as `{wanted}`"
            )
        got = list(inspect.signature(handler).parameters)[1:]
        if set(got) != set(op.parameters):
            raise ServiceError(
                f"handler {spec.name}.{op.name} takes ({', '.join(got)}) but the operation "
                f"declares ({', '.join(op.parameters)}): declare it as `{wanted}`"
            )
    for attr, value in vars(spec.cls).items():
        if (
            not attr.startswith("_")
            and inspect.iscoroutinefunction(value)
            and attr not in contract.operations
        ):
            raise ServiceError(
                f"service {spec.name!r} defines handler {attr!r}, which is not an operation of "
                f"contract {contract.name!r}: add it to the contract or make it private "
                f"(_{attr})"
            )
