"""Service contracts: ``@contract``, ``@operation`` and ``SessionMode``, checked as WCF checks them.

A contract is a class whose methods, marked with ``@operation``, declare the calls a service
accepts. The rules are enforced when the class is defined, each with a message that says how to
fix it:

- the session mode is ``ALLOWED`` unless declared; operations are initiating and not terminating
  unless declared;
- ``initiating=False`` or ``terminating=True`` needs ``SessionMode.REQUIRED``;
- at least one operation must be initiating;
- an operation is one-way unless it declares a return value, and a one-way operation may not
  declare one.

Argument schemas are pydantic models built from the type hints, so bad arguments are rejected
before a message is stored or queued. JSON has no NaN or infinity: a float argument must be
finite unless its type allows more (``Annotated[float, Field(allow_inf_nan=True)]``), and a
non-finite value that is allowed (in arguments, results or instance state) is carried as the
string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, never as something else.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType, NoneType
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic_core import to_json

from durable_sessions.errors import ContractError, InvalidArguments, UnknownOperation
from durable_sessions.model.signatures import Security

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_OPERATION_MARK = "__ds_operation__"
_CONTRACT_ATTR = "__ds_contract__"


class SessionMode(StrEnum):
    """Whether a contract's messages travel in sessions (WCF ``SessionMode``)."""

    ALLOWED = "allowed"
    REQUIRED = "required"
    NOT_ALLOWED = "not_allowed"


def json_value(value: Any) -> Any:
    """``value`` as JSON carries it: NaN and infinities become strings that pydantic reads back."""
    return json.loads(to_json(value, inf_nan_mode="strings"))


@dataclass(frozen=True, slots=True)
class _OperationMark:
    initiating: bool
    terminating: bool
    one_way: bool | None


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """One operation of a contract, with the schemas of its arguments and result."""

    contract: str
    name: str
    initiating: bool
    terminating: bool
    one_way: bool
    signature: inspect.Signature
    args_model: type[BaseModel]
    result_adapter: TypeAdapter[Any] | None = field(repr=False)

    @property
    def parameters(self) -> tuple[str, ...]:
        """Parameter names, in declaration order."""
        return tuple(self.signature.parameters)

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``args`` against the parameters and return them as JSON-ready values."""
        try:
            model = self.args_model.model_validate(dict(args))
        except ValidationError as e:
            errors: list[dict[str, object]] = [
                {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
                for err in e.errors(include_url=False, include_context=False, include_input=False)
            ]
            details = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or '-'}: {err['msg']}" for err in e.errors()
            )
            raise InvalidArguments(
                f"invalid arguments for {self.contract}.{self.name}: {details}", errors
            ) from None
        carried: dict[str, Any] = json_value(model.model_dump(mode="json"))
        return carried

    def bind(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Bind a Python call's arguments to parameter names, then validate them."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidArguments(f"{self.contract}.{self.name}(): {e}") from None
        return self.validate_args(bound.arguments)

    def load_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Turn stored JSON arguments back into the Python values the handler expects."""
        model = self.args_model.model_validate(dict(args))
        return {name: getattr(model, name) for name in self.parameters}

    def dump_result(self, value: Any) -> Any:
        """Check a handler's return value and return it as a JSON-ready value."""
        if self.result_adapter is None:
            if value is not None:
                raise TypeError(
                    f"{self.contract}.{self.name} is one-way but its handler returned "
                    f"{type(value).__name__}; one-way handlers must return None"
                )
            return None
        return json_value(
            self.result_adapter.dump_python(self.result_adapter.validate_python(value), mode="json")
        )

    def load_result(self, value: Any) -> Any:
        """Turn a stored JSON result back into the declared return type."""
        if self.result_adapter is None:
            return None
        return self.result_adapter.validate_python(value)

    def describe(self) -> dict[str, Any]:
        """A JSON description: flags and the JSON schemas of arguments and result."""
        return {
            "name": self.name,
            "initiating": self.initiating,
            "terminating": self.terminating,
            "one_way": self.one_way,
            "arguments": self.args_model.model_json_schema(),
            "result": None if self.result_adapter is None else self.result_adapter.json_schema(),
        }


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """A declared contract: its name, session mode and operations."""

    name: str
    session_mode: SessionMode
    operations: Mapping[str, OperationSpec]
    cls: type = field(repr=False)
    security: Security = Security.NONE
    """``MESSAGE``: every message is signed with its session's key (the security session)."""

    def operation(self, name: str) -> OperationSpec:
        """The operation called ``name``, or :class:`UnknownOperation` naming the known ones."""
        try:
            return self.operations[name]
        except KeyError:
            known = ", ".join(sorted(self.operations))
            raise UnknownOperation(
                f"contract {self.name!r} has no operation {name!r} (operations: {known})"
            ) from None

    def describe(self) -> dict[str, Any]:
        """A JSON description of the contract and its operations."""
        return {
            "name": self.name,
            "session_mode": self.session_mode.value,
            "security": self.security.value,
            "operations": [op.describe() for op in self.operations.values()],
        }


@overload
def operation(fn: F, /) -> F: ...
@overload
def operation(
    *, initiating: bool = True, terminating: bool = False, one_way: bool | None = None
) -> Callable[[F], F]: ...
def operation(
    fn: F | None = None,
    /,
    *,
    initiating: bool = True,
    terminating: bool = False,
    one_way: bool | None = None,
) -> F | Callable[[F], F]:
    """Mark a contract method as an operation.

    ``one_way`` defaults to "no declared return value"; ``initiating`` to True and
    ``terminating`` to False, as in WCF.
    """

    def mark(f: F) -> F:
        setattr(f, _OPERATION_MARK, _OperationMark(initiating, terminating, one_way))
        return f

    return mark(fn) if fn is not None else mark


@overload
def contract(cls: type[T], /) -> type[T]: ...
@overload
def contract(
    *,
    session_mode: SessionMode = SessionMode.ALLOWED,
    name: str | None = None,
    security: Security | str = Security.NONE,
) -> Callable[[type[T]], type[T]]: ...
def contract(
    cls: type[T] | None = None,
    /,
    *,
    session_mode: SessionMode = SessionMode.ALLOWED,
    name: str | None = None,
    security: Security | str = Security.NONE,
) -> type[T] | Callable[[type[T]], type[T]]:
    """Declare a class as a service contract; its ``@operation`` methods are the operations.

    ``security="message"`` requires the security session: every message signed.
    """

    def declare(c: type[T]) -> type[T]:
        spec = _build_contract(c, SessionMode(session_mode), name or c.__name__)
        spec = dataclasses.replace(spec, security=_security(spec, security))
        setattr(c, _CONTRACT_ATTR, spec)
        return c

    return declare(cls) if cls is not None else declare


def _security(spec: ContractSpec, value: Security | str) -> Security:
    try:
        security = Security(value)
    except ValueError:
        known = ", ".join(repr(str(s)) for s in Security)
        raise ContractError(f"contract {spec.name!r}: security is one of {known}") from None
    if security is Security.MESSAGE and spec.session_mode is SessionMode.NOT_ALLOWED:
        raise ContractError(
            f"contract {spec.name!r} requires message security, whose key belongs to a "
            "session, but does not allow sessions: declare SessionMode.ALLOWED or REQUIRED"
        )
    return security


def contract_of(obj: object) -> ContractSpec:
    """The :class:`ContractSpec` of a contract class, or a :class:`ContractError`."""
    spec = getattr(obj, _CONTRACT_ATTR, None)
    if not isinstance(spec, ContractSpec) or spec.cls is not obj:
        shown = getattr(obj, "__name__", repr(obj))
        raise ContractError(f"{shown} is not a contract: decorate its class with @contract")
    return spec


def _build_contract(cls: type, mode: SessionMode, name: str) -> ContractSpec:
    marked = {
        attr: fn
        for klass in reversed(cls.__mro__)
        for attr, fn in vars(klass).items()
        if callable(fn) and hasattr(fn, _OPERATION_MARK)
    }
    if not marked:
        raise ContractError(
            f"contract {name!r} declares no operations: mark its methods with @operation"
        )
    operations = {attr: _build_operation(name, attr, fn) for attr, fn in marked.items()}
    inconsistent = [op.name for op in operations.values() if not op.initiating or op.terminating]
    if inconsistent and mode is not SessionMode.REQUIRED:
        raise ContractError(
            f"The contract {name!r} is not self-consistent -- operation(s) "
            f"{', '.join(map(repr, inconsistent))} are terminating or non-initiating, but the "
            f"contract's session mode is {mode.name}. initiating=False and terminating=True "
            "only make sense inside a session: declare "
            "@contract(session_mode=SessionMode.REQUIRED) or drop those flags."
        )
    if not any(op.initiating for op in operations.values()):
        raise ContractError(
            f"Contract {name!r} has zero initiating operations; a contract must have at least "
            "one. Let the operation that starts the conversation keep initiating=True "
            "(the default)."
        )
    return ContractSpec(name, mode, MappingProxyType(operations), cls)


def _build_operation(contract_name: str, attr: str, fn: Callable[..., Any]) -> OperationSpec:
    where = f"{contract_name}.{attr}"
    mark: _OperationMark = getattr(fn, _OPERATION_MARK)
    if attr.startswith("_"):
        raise ContractError(f"operation {where} must have a public name (no leading underscore)")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as e:
        raise ContractError(
            f"cannot resolve the type hints of {where}: {e}; define the types it uses at module "
            "level"
        ) from None
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "self":
        raise ContractError(f"operation {where} must be a method whose first parameter is self")
    fields: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ContractError(
                f"operation {where} takes *{p.name}; operations need named parameters so their "
                "messages can be validated"
            )
        if p.name not in hints:
            raise ContractError(
                f"parameter {p.name!r} of {where} has no type hint; argument schemas come from "
                f"type hints, e.g. `{p.name}: float`"
            )
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints[p.name], default)
    returns = hints.get("return", NoneType)
    has_result = returns not in (None, NoneType)
    if mark.one_way and has_result:
        raise ContractError(
            f"Operation {where} is marked one_way=True and must not declare a return value: "
            f"remove the return annotation or drop one_way=True"
        )
    one_way = (not has_result) if mark.one_way is None else mark.one_way
    args_model = create_model(
        f"{contract_name}_{attr}_args",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        **fields,
    )
    signature = inspect.Signature([p.replace(annotation=hints[p.name]) for p in params[1:]])
    adapter = None if one_way else TypeAdapter(returns)
    return OperationSpec(
        contract=contract_name,
        name=attr,
        initiating=mark.initiating,
        terminating=mark.terminating,
        one_way=one_way,
        signature=signature,
        args_model=args_model,
        result_adapter=adapter,
    )
