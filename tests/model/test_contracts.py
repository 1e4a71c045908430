"""Contract declarations: WCF's rules, checked when the class is defined."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Protocol

import pytest
from pydantic import BaseModel, Field

from durable_sessions.errors import ContractError, InvalidArguments, UnknownOperation
from durable_sessions.examples.calculator import Calculator
from durable_sessions.model.contracts import SessionMode, contract, contract_of, operation


class Point(BaseModel):
    x: int
    y: int


def test_defaults_follow_wcf() -> None:
    @contract
    class Greeter(Protocol):
        @operation
        async def hello(self, name: str) -> None: ...

        @operation
        async def shout(self, name: str) -> str: ...

    spec = contract_of(Greeter)
    assert spec.name == "Greeter"
    assert spec.session_mode is SessionMode.ALLOWED
    hello, shout = spec.operation("hello"), spec.operation("shout")
    assert (hello.initiating, hello.terminating, hello.one_way) == (True, False, True)
    assert (shout.initiating, shout.terminating, shout.one_way) == (True, False, False)


def test_the_calculator_contract() -> None:
    spec = contract_of(Calculator)
    assert spec.session_mode is SessionMode.REQUIRED
    flags = {
        name: (op.initiating, op.terminating, op.one_way) for name, op in spec.operations.items()
    }
    assert flags == {
        "clear": (True, False, True),
        "add_to": (False, False, True),
        "subtract_from": (False, False, True),
        "multiply_by": (False, False, True),
        "divide_by": (False, False, True),
        "equals": (False, True, False),
    }


@pytest.mark.parametrize("mode", [SessionMode.ALLOWED, SessionMode.NOT_ALLOWED])
def test_non_initiating_operation_needs_required_sessions(mode: SessionMode) -> None:
    with pytest.raises(ContractError) as raised:

        @contract(session_mode=mode)
        class Bad:
            @operation
            async def start(self) -> None: ...

            @operation(initiating=False)
            async def more(self) -> None: ...

    message = str(raised.value)
    assert "not self-consistent" in message
    assert "'more'" in message
    assert "session_mode=SessionMode.REQUIRED" in message


def test_terminating_operation_needs_required_sessions() -> None:
    with pytest.raises(ContractError, match=r"not self-consistent.*'stop'.*REQUIRED"):

        @contract
        class Bad:
            @operation
            async def start(self) -> None: ...

            @operation(terminating=True)
            async def stop(self) -> None: ...


def test_a_contract_needs_an_initiating_operation() -> None:
    with pytest.raises(ContractError, match="zero initiating operations") as raised:

        @contract(session_mode=SessionMode.REQUIRED)
        class Bad:
            @operation(initiating=False)
            async def more(self) -> None: ...

    assert "initiating=True" in str(raised.value)


def test_a_contract_needs_operations() -> None:
    with pytest.raises(ContractError, match=r"declares no operations.*@operation"):

        @contract
        class Empty:
            async def not_marked(self) -> None: ...


def test_one_way_operation_may_not_return_a_value() -> None:
    with pytest.raises(ContractError, match="one_way=True and must not declare a return value"):

        @contract
        class Bad:
            @operation(one_way=True)
            async def compute(self) -> int: ...


def test_two_way_without_result_returns_none() -> None:
    @contract
    class Sync:
        @operation(one_way=False)
        async def flush(self) -> None: ...

    op = contract_of(Sync).operation("flush")
    assert not op.one_way
    assert op.dump_result(None) is None


def test_parameters_need_type_hints() -> None:
    with pytest.raises(ContractError, match=r"parameter 'n' of Bad.add has no type hint"):

        @contract
        class Bad:
            @operation
            async def add(self, n) -> None: ...  # type: ignore[no-untyped-def]


def test_var_args_are_refused() -> None:
    with pytest.raises(ContractError, match=r"takes \*args"):

        @contract
        class Bad:
            @operation
            async def add(self, *args: int) -> None: ...


def test_operation_names_must_be_public() -> None:
    with pytest.raises(ContractError, match="public name"):

        @contract
        class Bad:
            @operation
            async def _hidden(self) -> None: ...


def test_operations_must_be_methods() -> None:
    with pytest.raises(ContractError, match="first parameter is self"):

        @contract
        class Bad:
            @operation
            @staticmethod
            async def add(n: int) -> None: ...


def test_unresolvable_hints_are_explained() -> None:
    with pytest.raises(ContractError, match="cannot resolve the type hints"):

        @contract
        class Bad:
            @operation
            async def add(self, n: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821


def test_contract_of_refuses_other_classes() -> None:
    class Plain:
        pass

    with pytest.raises(ContractError, match="Plain is not a contract: decorate"):
        contract_of(Plain)


def test_contracts_inherit_operations() -> None:
    @contract
    class Base:
        @operation
        async def ping(self) -> None: ...

    @contract(name="Extended")
    class Extended(Base):
        @operation
        async def pong(self) -> str: ...

    assert list(contract_of(Extended).operations) == ["ping", "pong"]
    assert contract_of(Extended).name == "Extended"
    assert list(contract_of(Base).operations) == ["ping"]


# --- argument and result schemas --------------------------------------------------------


@contract
class Shapes:
    @operation
    async def move(self, point: Point, by: int = 1, at: datetime | None = None) -> Point: ...


def test_arguments_are_validated_and_made_json_ready() -> None:
    op = contract_of(Shapes).operation("move")
    assert op.validate_args({"point": {"x": 1, "y": 2}, "at": "2026-01-02T03:04:05Z"}) == {
        "point": {"x": 1, "y": 2},
        "by": 1,
        "at": "2026-01-02T03:04:05Z",
    }
    loaded = op.load_args({"point": {"x": 1, "y": 2}, "by": 3, "at": None})
    assert loaded == {"point": Point(x=1, y=2), "by": 3, "at": None}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "point: Field required"),
        ({"point": {"x": "a", "y": 1}}, "point.x"),
        ({"point": {"x": 1, "y": 1}, "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"point": {"x": 1, "y": 1}, "by": "many"}, "by:"),
    ],
)
def test_bad_arguments_are_rejected_with_details(args: dict[str, object], expected: str) -> None:
    op = contract_of(Shapes).operation("move")
    with pytest.raises(InvalidArguments, match=r"invalid arguments for Shapes\.move") as raised:
        op.validate_args(args)
    assert expected in str(raised.value)
    assert raised.value.errors


@contract
class Measures:
    @operation
    async def record(
        self, reading: float, limit: Annotated[float, Field(allow_inf_nan=True)] = math.inf
    ) -> float: ...


@pytest.mark.parametrize("reading", ["NaN", "nan", "Infinity", "-inf", math.inf, math.nan, 1e400])
def test_float_arguments_that_json_cannot_carry_are_refused(reading: object) -> None:
    op = contract_of(Measures).operation("record")
    with pytest.raises(InvalidArguments, match="reading: Input should be a finite number") as e:
        op.validate_args({"reading": reading})
    assert [error["loc"] for error in e.value.errors] == [["reading"]]


def test_a_type_that_allows_nan_keeps_it_as_a_string_json_can_carry() -> None:
    op = contract_of(Measures).operation("record")
    for given, carried in [(math.inf, "Infinity"), ("-Infinity", "-Infinity"), ("NaN", "NaN")]:
        args = op.validate_args({"reading": 1.5, "limit": given})
        assert args == {"reading": 1.5, "limit": carried}
        assert json.loads(json.dumps(args, allow_nan=False)) == args
    assert op.validate_args({"reading": 1.5}) == {"reading": 1.5, "limit": "Infinity"}
    assert op.load_args({"reading": 1.5, "limit": "-Infinity"})["limit"] == -math.inf
    assert math.isnan(op.load_args({"reading": 1.5, "limit": "NaN"})["limit"])


@pytest.mark.parametrize(("value", "carried"), [(math.inf, "Infinity"), (-math.inf, "-Infinity")])
def test_non_finite_results_are_carried_as_strings_not_null(value: float, carried: str) -> None:
    op = contract_of(Measures).operation("record")
    assert op.dump_result(value) == carried
    assert op.load_result(carried) == value
    assert math.isnan(op.load_result(op.dump_result(math.nan)))


def test_python_calls_bind_positional_and_keyword_arguments() -> None:
    op = contract_of(Shapes).operation("move")
    assert op.bind(Point(x=1, y=2), 5)["by"] == 5
    assert op.bind(point={"x": 0, "y": 0}, by=2)["point"] == {"x": 0, "y": 0}
    with pytest.raises(InvalidArguments, match=r"Shapes\.move"):
        op.bind(Point(x=1, y=2), 1, None, "too many")


def test_results_are_checked_against_the_declared_type() -> None:
    op = contract_of(Shapes).operation("move")
    assert op.dump_result(Point(x=3, y=4)) == {"x": 3, "y": 4}
    assert op.load_result({"x": 3, "y": 4}) == Point(x=3, y=4)
    with pytest.raises(ValueError, match="validation error"):
        op.dump_result("not a point")


def test_one_way_results_must_be_none() -> None:
    op = contract_of(Calculator).operation("add_to")
    with pytest.raises(TypeError, match="one-way but its handler returned int"):
        op.dump_result(5)


def test_unknown_operation_names_the_known_ones() -> None:
    with pytest.raises(UnknownOperation, match=r"no operation 'sqrt' \(operations: add_to"):
        contract_of(Calculator).operation("sqrt")


def test_describe_gives_json_schemas() -> None:
    described = contract_of(Shapes).describe()
    (move,) = described["operations"]
    assert described["session_mode"] == "allowed"
    assert move["arguments"]["required"] == ["point"]
    assert move["result"]["title"] == "Point"
