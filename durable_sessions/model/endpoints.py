"""Endpoints: a contract served on a binding, with its topology and poison policy.

Binding compatibility is checked when an endpoint is made, as WCF checks it when a host
opens, and the error names the binding to use instead. As in WCF, a contract whose session mode
is ALLOWED works both ways on a sessionful binding: its endpoint takes sessions and datagrams,
and each client chooses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from durable_sessions.errors import BindingMismatch, ConfigurationError, UnknownContract
from durable_sessions.model.contracts import ContractSpec, SessionMode
from durable_sessions.model.services import Concurrency, Instancing, ServiceSpec
from durable_sessions.model.signatures import Security
from durable_sessions.model.topology import DEFAULT_SESSION_QUEUES, EndpointTopology


class Binding(StrEnum):
    """How messages travel to an endpoint."""

    DATAGRAM = "datagram"
    QUEUED_SESSION = "queued-session"
    RELIABLE_SESSION = "reliable-session"

    @property
    def sessionful(self) -> bool:
        """True for the bindings that carry sessions."""
        return self is not Binding.DATAGRAM

    @classmethod
    def named(cls, name: str) -> Binding:
        """The binding called ``name``; a :class:`ConfigurationError` lists the known ones."""
        try:
            return cls(name.strip().lower())
        except ValueError:
            known = ", ".join(f"'{b}'" for b in cls)
            raise ConfigurationError(f"unknown binding {name!r}: use one of {known}") from None


class ReceiveErrorHandling(StrEnum):
    """What happens to a message whose retries are exhausted (NetMsmqBinding's names)."""

    FAULT = "fault"
    """The session faults and stops at the message until an operator resumes or terminates."""
    DROP = "drop"
    """The message is recorded as failed and the session goes on without it."""
    REJECT = "reject"
    """The message becomes a dead letter and goes to the broker's dead-letter queue."""
    MOVE = "move"
    """The message becomes a dead letter and is published to the endpoint's poison queue."""


@dataclass(frozen=True, slots=True)
class PoisonPolicy:
    """Retries and the final outcome of a failing message; defaults are NetMsmqBinding's."""

    receive_retry_count: int = 5
    """Immediate retries after the first attempt, in one cycle."""
    max_retry_cycles: int = 2
    """Further cycles, each after ``retry_cycle_delay_s``."""
    retry_cycle_delay_s: float = 1800.0
    receive_error_handling: ReceiveErrorHandling = ReceiveErrorHandling.FAULT

    def __post_init__(self) -> None:
        if self.receive_retry_count < 0 or self.max_retry_cycles < 0:
            raise ConfigurationError("retry counts cannot be negative")
        if self.retry_cycle_delay_s < 0:
            raise ConfigurationError("retry_cycle_delay_s cannot be negative")

    @property
    def attempts_per_cycle(self) -> int:
        """Attempts in one cycle: the first one and the immediate retries."""
        return self.receive_retry_count + 1

    @property
    def max_attempts(self) -> int:
        """All attempts before ``receive_error_handling`` applies: 18 with the defaults."""
        return self.attempts_per_cycle * (self.max_retry_cycles + 1)


def default_endpoint_name(contract: ContractSpec) -> str:
    """``OrderProcessing`` becomes ``order-processing``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", contract.name).lower()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A contract served at a named address on a binding."""

    name: str
    contract: ContractSpec
    binding: Binding
    topology: EndpointTopology
    poison: PoisonPolicy = field(default_factory=PoisonPolicy)
    security: Security = Security.NONE
    """The endpoint's own requirement; the contract's applies as well (:attr:`signed`)."""

    @property
    def signed(self) -> bool:
        """True when every message must be signed with its session's key (the security session)."""
        return Security.MESSAGE in (self.security, self.contract.security)

    @property
    def accepts_sessions(self) -> bool:
        """True when clients may open sessions here: a sessionful binding, sessions allowed."""
        return self.binding.sessionful and self.contract.session_mode is not SessionMode.NOT_ALLOWED

    @property
    def accepts_datagrams(self) -> bool:
        """True when clients may send datagrams here: unless the contract requires sessions.

        On a sessionful binding an ALLOWED contract takes datagrams beside sessions. An endpoint
        that requires message security takes none: a datagram has no session key to sign with.
        """
        return self.contract.session_mode is not SessionMode.REQUIRED and not self.signed

    @classmethod
    def for_service(
        cls,
        service: ServiceSpec,
        *,
        name: str | None = None,
        binding: Binding | None = None,
        poison: PoisonPolicy | None = None,
        session_queues: int = DEFAULT_SESSION_QUEUES,
        security: Security = Security.NONE,
    ) -> Endpoint:
        """The endpoint of ``service``, checked for binding compatibility.

        The binding defaults to ``datagram`` for contracts that do not allow sessions and for
        ``Concurrency.MULTIPLE`` services, and to ``queued-session`` for the others (which takes
        datagrams too if sessions are ALLOWED).
        """
        contract = service.contract
        chosen = binding or (
            Binding.DATAGRAM
            if contract.session_mode is SessionMode.NOT_ALLOWED
            or service.concurrency is Concurrency.MULTIPLE
            else Binding.QUEUED_SESSION
        )
        check_binding(service, chosen)
        endpoint_name = name or default_endpoint_name(contract)
        return cls(
            name=endpoint_name,
            contract=contract,
            binding=chosen,
            topology=EndpointTopology(endpoint_name, session_queue_count=session_queues),
            poison=poison or PoisonPolicy(),
            security=security,
        )


def check_binding(service: ServiceSpec, binding: Binding) -> None:
    """Raise :class:`BindingMismatch` unless ``binding`` can carry ``service``'s contract."""
    contract = service.contract
    mode = contract.session_mode
    if mode is SessionMode.REQUIRED and not binding.sessionful:
        raise BindingMismatch(
            f"Contract requires Session, but Binding '{binding}' doesn't support it or isn't "
            f"configured properly to support it. Serve contract {contract.name!r} on the "
            f"'{Binding.QUEUED_SESSION}' or '{Binding.RELIABLE_SESSION}' binding."
        )
    if mode is SessionMode.NOT_ALLOWED and binding.sessionful:
        raise BindingMismatch(
            f"Contract does not allow Session, but Binding '{binding}' does not support "
            f"Datagram or is not configured properly to support it. Serve contract "
            f"{contract.name!r} on the '{Binding.DATAGRAM}' binding."
        )
    if binding.sessionful and service.concurrency is Concurrency.MULTIPLE:
        raise BindingMismatch(
            f"service {service.name!r} uses Concurrency.MULTIPLE, but the '{binding}' binding "
            "carries sessions, whose messages apply one at a time in order. Use "
            f"Concurrency.SINGLE, or serve it on the '{Binding.DATAGRAM}' binding."
        )
    if not binding.sessionful and service.instancing is Instancing.PER_SESSION:
        raise BindingMismatch(
            f"service {service.name!r} uses Instancing.PER_SESSION, but the '{binding}' binding "
            "has no sessions, so every message would be a call of its own. Use "
            f"Instancing.PER_CALL or Instancing.SINGLE, or the '{Binding.QUEUED_SESSION}' "
            "binding."
        )


class Endpoints(Mapping[str, Endpoint]):
    """The endpoints a process knows, by name, with lookup by contract name."""

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self._by_name: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            if endpoint.name in self._by_name:
                raise ConfigurationError(f"two endpoints are named {endpoint.name!r}")
            self._by_name[endpoint.name] = endpoint

    def __getitem__(self, name: str) -> Endpoint:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def for_contract(self, contract: str, endpoint: str | None = None) -> Endpoint:
        """The endpoint serving ``contract`` (named ``endpoint`` if given)."""
        if endpoint is not None:
            found = self._by_name.get(endpoint)
            if found is None or found.contract.name != contract:
                raise UnknownContract(f"no endpoint {endpoint!r} serves contract {contract!r}")
            return found
        matches = [e for e in self._by_name.values() if e.contract.name == contract]
        if not matches:
            known = ", ".join(sorted({e.contract.name for e in self._by_name.values()}))
            raise UnknownContract(f"no endpoint serves contract {contract!r} (known: {known})")
        if len(matches) > 1:
            names = ", ".join(e.name for e in matches)
            raise ConfigurationError(
                f"contract {contract!r} is served by several endpoints ({names}): name one"
            )
        return matches[0]
