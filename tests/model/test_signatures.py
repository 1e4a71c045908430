"""The security session's pure parts: HKDF, the canonical form, the header parser, verify."""

from __future__ import annotations

import base64
from typing import Protocol

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_sessions import SessionMode, contract, operation
from durable_sessions.errors import ContractError, SignatureRefused
from durable_sessions.examples.calculator import CalculatorService
from durable_sessions.model import signatures
from durable_sessions.model.contracts import contract_of
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.services import service_of
from durable_sessions.model.signatures import Security

KEY = bytes(range(32))
SID = "0b0c6a52-8f0e-4d1e-9b1f-3d1d2b9f8c11"


def test_hkdf_matches_rfc_5869_test_case_1() -> None:
    okm = signatures.hkdf_sha256(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_each_session_has_its_own_key() -> None:
    one = signatures.session_key(b"secret", SID)
    assert len(one) == 32
    assert one == signatures.session_key(b"secret", SID)
    assert one != signatures.session_key(b"secret", SID.replace("0", "1"))
    assert one != signatures.session_key(b"other secret", SID)


def test_the_canonical_form_is_seven_lines_with_canonical_json() -> None:
    form = signatures.canonical_form(SID, "m-1", "deposit", {"b": [1, 2], "a": "é"}, 17, "nonce")
    assert (
        form == f'DS-Signature-v1\n{SID}\nm-1\ndeposit\n{{"a":"é","b":[1,2]}}\n17\nnonce'.encode()
    )


def test_a_signature_verifies_for_its_message_only() -> None:
    signed = signatures.sign(KEY, SID, "m-1", "deposit", {"amount": 5}, 1000.0)
    parsed = signatures.parse(signed.header())
    assert parsed == signed
    signatures.verify(KEY, parsed, SID, "m-1", "deposit", {"amount": 5}, 1000.0 + 300)
    for sid, mid, op, args in (
        ("other", "m-1", "deposit", {"amount": 5}),
        (SID, "m-2", "deposit", {"amount": 5}),
        (SID, "m-1", "total", {"amount": 5}),
        (SID, "m-1", "deposit", {"amount": 6}),
    ):
        with pytest.raises(SignatureRefused) as refused:
            signatures.verify(KEY, parsed, sid, mid, op, args, 1000.0)
        assert refused.value.kind == "invalid"


@pytest.mark.parametrize("offset", [-301.0, 301.0])
def test_a_time_beyond_max_clock_skew_is_stale(offset: float) -> None:
    signed = signatures.sign(KEY, SID, "m-1", "deposit", {}, 1000.0)
    with pytest.raises(SignatureRefused) as refused:
        signatures.verify(KEY, signed, SID, "m-1", "deposit", {}, 1000.0 - offset)
    assert refused.value.kind == "stale"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "t=1,n=aaaaaaaaaaaaaaaa",
        "n=aaaaaaaaaaaaaaaa,t=1,s=" + "A" * 43 + "=",
        "t=1,n=short,s=" + "A" * 43 + "=",
        "t=-1,n=aaaaaaaaaaaaaaaa,s=" + "A" * 43 + "=",
        "t=1,n=aaaaaaaaaaaaaaaa,s=" + "A" * 43 + "=\n",
        "t=\uff11,n=aaaaaaaaaaaaaaaa,s=" + "A" * 43 + "=",  # a fullwidth digit
        "t=1,n=aaaaaaaaaaaaaaaa,s=" + "A" * 43 + "=,x=1",
        "t=1,n=" + "a" * 300 + ",s=" + "A" * 43 + "=",
        "t=1,n=aaaaaaaaaaaaaaaa,s=" + "A" * 42 + "B=",  # not canonical base64
    ],
)
def test_the_parser_is_strict(value: str | None) -> None:
    with pytest.raises(SignatureRefused) as refused:
        signatures.parse(value)
    assert refused.value.kind in {"missing", "malformed"}


NEARLY = st.from_regex(
    r"t=-?[0-9\uff10-\uff19]{0,13},n=[\w\-.]{14,66},s=[A-Za-z0-9+/=]{41,47}", fullmatch=True
)
"""Headers close to well formed, so the parser's every check is reached."""


@given(st.text(max_size=300) | NEARLY)
def test_the_parser_raises_nothing_but_the_refusal(value: str) -> None:
    try:
        parsed = signatures.parse(value)
    except SignatureRefused as refused:
        kind = refused.kind
    else:
        kind = "parsed"
        assert parsed.header() == value
    assert kind in {"missing", "malformed", "parsed"}


@given(
    st.integers(min_value=0, max_value=10**12 - 1),
    st.text("abcXYZ019_-", min_size=16, max_size=64),
    st.binary(min_size=32, max_size=32),
)
def test_every_well_formed_header_parses_back(t: int, n: str, mac: bytes) -> None:
    value = f"t={t},n={n},s={base64.b64encode(mac).decode()}"
    assert signatures.parse(value) == signatures.Signature(t, n, mac)


def test_a_contract_declares_message_security() -> None:
    @contract(session_mode=SessionMode.REQUIRED, security="message")
    class Signed(Protocol):
        @operation
        async def go(self) -> None: ...

    assert contract_of(Signed).security is Security.MESSAGE
    assert contract_of(Signed).describe()["security"] == "message"


def test_message_security_needs_sessions_and_a_known_mode() -> None:
    with pytest.raises(ContractError, match="does not allow sessions"):

        @contract(session_mode=SessionMode.NOT_ALLOWED, security="message")
        class Datagrams(Protocol):
            @operation
            async def go(self) -> None: ...

    with pytest.raises(ContractError, match="security is one of"):

        @contract(security="transport")
        class Unknown(Protocol):
            @operation
            async def go(self) -> None: ...


def test_an_endpoint_may_require_message_security_of_any_sessionful_contract() -> None:
    plain = Endpoint.for_service(service_of(CalculatorService))
    signed = Endpoint.for_service(service_of(CalculatorService), security=Security.MESSAGE)
    assert (plain.signed, signed.signed) == (False, True)
    assert not signed.accepts_datagrams
