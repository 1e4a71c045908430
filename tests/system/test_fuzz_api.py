"""Schemathesis against the OpenAPI of a real ``durable-sessions up``: every operation, called
as an admin, with no credential, as a reader and with another session's token, answers no
server error and nothing outside its documented responses. The decoder fuzz's envelopes are
then posted to its SOAP endpoint: no server error there either (a MustUnderstand or
VersionMismatch fault is 500 by SOAP 1.2's HTTP binding, not one).

The run is bounded (``DS_FUZZ_EXAMPLES`` examples per operation and generation mode) and prints
its counts: operations, requests, server errors, responses outside the schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from durable_sessions.wsrm.messages import Fault, FaultCode
from durable_sessions.wsrm.xml import codec
from tests.system.test_up_and_demo import Up, calculator_up
from tests.wsrm.test_codec_fuzz import inputs

pytestmark = [pytest.mark.fuzz, pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.timeout(420)]

ADMIN = "fuzz-admin-key-0123456789abcdef"
EXAMPLES = int(os.environ.get("DS_FUZZ_EXAMPLES", "30"))
ENVELOPES = int(os.environ.get("DS_FUZZ_ENVELOPES", "300"))
BINDING_FAULTS = (FaultCode.MUST_UNDERSTAND, FaultCode.VERSION_MISMATCH)
BOTH = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Tally:
    """What one credential's run sent and what came back wrong."""

    operations: int = 0
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    unavailable: int = 0
    """503 answers while the database or the broker was down (not server errors)."""
    outside_schema: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Caller:
    """A credential to fuzz with, and the session ids its paths are pinned to (if any)."""

    name: str
    headers: dict[str, str]
    path_parameters: dict[str, str] = field(default_factory=dict)
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE,)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    with calculator_up(tmp_path, DS_API_KEYS=ADMIN, DS_LOG_LEVEL="WARNING") as running:
        yield running


def fuzz(schema: Any, caller: Caller, tally: Tally, ready: Callable[[], bool]) -> None:
    """Every operation of ``schema`` with ``caller``'s credential; failures go to ``tally``.

    A 503 is a server error unless ``ready()`` says a dependency is down at that moment.
    """

    def check(case: Case) -> None:
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
        response = case.call(headers=caller.headers, timeout=30)
        tally.requests += 1
        where = f"{caller.name}: {case.method} {case.formatted_path} -> {response.status_code}"
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, FailureGroup):
            if response.status_code == 503 and not ready():
                tally.unavailable += 1
            else:
                tally.server_errors.append(f"{where}: {response.text[:300]}")
        try:
            case.validate_response(response, checks=CONFORMANCE)
        except (AssertionError, FailureGroup) as failure:
            tally.outside_schema.append(f"{where}: {str(failure)[:600]}")

    for result in schema.get_all_operations():
        operation = result.ok()
        tally.operations += 1
        pinned = {
            name: value
            for name, value in caller.path_parameters.items()
            if "{" + name + "}" in operation.path
        }
        for mode in caller.modes:
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned or None)
            run = settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(strategy)(check))
            run()


def _binding_fault(response: httpx.Response) -> bool:
    """A MustUnderstand or VersionMismatch fault: SOAP 1.2's HTTP binding answers them 500."""
    if response.status_code != 500:
        return False
    fault = codec.decode(response.content).body
    return isinstance(fault, Fault) and fault.code in BINDING_FAULTS


def post_envelopes(http: httpx.Client, endpoint: str, ready: Callable[[], bool]) -> Tally:
    """The decoder fuzz's random and mutated real envelopes, through ``/v1/soap/{endpoint}``."""
    tally = Tally(operations=1)
    soap = {"content-type": "application/soap+xml; charset=utf-8"}

    @settings(
        max_examples=ENVELOPES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs())
    def post(document: bytes) -> None:
        response = http.post(f"/v1/soap/{endpoint}", content=document, headers=soap)
        tally.requests += 1
        if response.status_code == 503 and not ready():
            tally.unavailable += 1
        elif response.status_code >= 500 and not _binding_fault(response):
            tally.server_errors.append(f"soap -> {response.status_code}: {response.text[:400]}")

    post()
    return tally


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
    up: Up, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=up.url, headers=admin, timeout=30) as http:
        made = http.post("/v1/keys", json={"name": "fuzz-reader", "role": "reader"})
        assert made.status_code == 201, made.text
        reader = made.json()["key"]
        own, other = (http.post("/v1/sessions", json={"contract": "Calculator"}) for _ in "ab")
        assert own.status_code == other.status_code == 201, own.text + other.text
        own_id, other_id = own.json()["id"], other.json()["id"]
        before = http.get(f"/v1/sessions/{other_id}").json()

        schema = schemathesis.openapi.from_url(f"{up.url}/openapi.json")
        token = {"Authorization": f"Bearer {own.json()['session_token']}"}
        callers = [
            Caller("another session's token", token, {"session_id": other_id}),
            Caller("no credential", {}),
            Caller("reader", {"Authorization": f"Bearer {reader}"}, {"session_id": other_id}),
            Caller("admin", admin, modes=BOTH),
            Caller("admin on a real session", admin, {"session_id": own_id}, BOTH),
        ]
        tallies = {caller.name: Tally() for caller in callers}

        def ready() -> bool:
            return http.get("/readyz").status_code == 200

        for caller in callers[:3]:
            fuzz(schema, caller, tallies[caller.name], ready)
        after_refusals = http.get(f"/v1/sessions/{other_id}").json()
        for caller in callers[3:]:
            fuzz(schema, caller, tallies[caller.name], ready)
        endpoint = http.get("/v1/endpoints").json()[0]["name"]
        tallies["admin, WS-RM envelopes"] = post_envelopes(http, endpoint, ready)

    with capsys.disabled():
        print("\nschemathesis against durable-sessions up:")
        for name, tally in tallies.items():
            print(
                f"  {name}: {tally.operations} operations, {tally.requests} requests, "
                f"{len(tally.server_errors)} server errors, "
                f"{len(tally.outside_schema)} responses outside the schema, "
                f"{tally.unavailable} answers 503 while a dependency was down"
            )
        total = list(tallies.values())
        print(
            f"  total: {total[0].operations} operations, {sum(t.requests for t in total)} "
            f"requests, {sum(len(t.server_errors) for t in total)} server errors, "
            f"{sum(len(t.outside_schema) for t in total)} responses outside the schema"
        )
    problems = [p for t in tallies.values() for p in t.server_errors + t.outside_schema]
    assert not problems, "\n".join(problems[:20])
    assert after_refusals == before, "a refused call changed another session"
