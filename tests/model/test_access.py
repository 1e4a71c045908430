"""The role table and the session rules of ``allows``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from durable_sessions.model.access import ROLE_PERMISSIONS, Permission, Principal, Role, allows

P = Permission


@dataclass(frozen=True)
class Session:
    id: str
    contract: str
    opened_by: str | None


MINE = Session("s1", "Calculator", "dsk_mine")
THEIRS = Session("s2", "Calculator", "dsk_theirs")
OTHER_CONTRACT = Session("s3", "Tally", "dsk_mine")


def key(role: Role, contract: str | None = None) -> Principal:
    return Principal(name="k", role=role, id="dsk_mine", contract=contract)


def test_the_role_table() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert ROLE_PERMISSIONS[Role.OPERATOR] == {
        P.READ, P.CLOSE, P.TERMINATE, P.RESUME, P.REPLAY, P.RESUME_LISTENER
    }  # fmt: skip
    assert ROLE_PERMISSIONS[Role.SENDER] == {P.OPEN, P.SEND, P.READ, P.CLOSE, P.TERMINATE}
    assert ROLE_PERMISSIONS[Role.READER] == {P.READ}
    assert ROLE_PERMISSIONS[Role.SESSION] == {P.SEND, P.READ, P.CLOSE, P.TERMINATE}


@pytest.mark.parametrize("permission", list(Permission))
def test_an_admin_may_do_everything(permission: Permission) -> None:
    assert allows(key(Role.ADMIN), permission, session=THEIRS)


def test_a_sender_acts_on_its_own_sessions_opens_and_sends_datagrams() -> None:
    sender = key(Role.SENDER)
    for permission in (P.SEND, P.READ, P.CLOSE, P.TERMINATE):
        assert allows(sender, permission, session=MINE)
        assert not allows(sender, permission, session=THEIRS)
    assert allows(sender, P.OPEN, contract="Calculator")
    assert allows(sender, P.SEND, contract="Notes")  # a datagram
    assert not allows(sender, P.READ)  # listing every session
    assert not allows(sender, P.RESUME, session=MINE)


def test_a_session_token_acts_on_its_session_only() -> None:
    token = Principal(
        name="session s1", role=Role.SESSION, id="s1", contract="Calculator", session_id="s1"
    )
    assert allows(token, P.SEND, session=MINE)
    assert allows(token, P.TERMINATE, session=MINE)
    assert not allows(token, P.SEND, session=THEIRS)
    assert not allows(token, P.SEND, contract="Calculator")
    assert not allows(token, P.OPEN, contract="Calculator")
    assert not allows(token, P.READ)


def test_a_scoped_key_acts_on_its_contract_only() -> None:
    reader = key(Role.READER, contract="Calculator")
    assert allows(reader, P.READ, session=THEIRS)
    assert allows(reader, P.READ, contract="Calculator")
    assert not allows(reader, P.READ, session=OTHER_CONTRACT)
    assert not allows(reader, P.READ)
    assert not allows(key(Role.SENDER, "Calculator"), P.SEND, session=OTHER_CONTRACT)
    assert not allows(key(Role.OPERATOR), P.SEND, session=MINE)
