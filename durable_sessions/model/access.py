"""Who may do what: roles, permissions, the table between them, and :func:`allows`.

A caller is a :class:`Principal`: an API key's name and role (optionally scoped to one
contract), or a session token bound to one session. :data:`ROLE_PERMISSIONS` is the one table
of what each role may do; :func:`allows` adds the two rules that depend on the session asked
about: a sender acts only on sessions it opened, a session token only on its own session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    """What a credential is for."""

    ADMIN = "admin"
    """Everything, keys included (the keys of ``DS_API_KEYS`` and the key file are admins)."""
    OPERATOR = "operator"
    """Read everything; close, terminate and resume sessions; replay dead letters."""
    SENDER = "sender"
    """Open sessions and drive the ones it opened; send datagrams."""
    READER = "reader"
    """Read only."""
    SESSION = "session"
    """A session token: drive and read its one session, nothing else (never a key's role)."""


class Permission(StrEnum):
    """One thing a route does; every route declares the one it needs."""

    READ = "read"
    OPEN = "open"
    SEND = "send"
    CLOSE = "close"
    TERMINATE = "terminate"
    RESUME = "resume"
    REPLAY = "replay"
    RESUME_LISTENER = "resume_listener"
    MANAGE_KEYS = "manage_keys"


_DRIVE = frozenset({Permission.SEND, Permission.READ, Permission.CLOSE, Permission.TERMINATE})

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset(
        {
            Permission.READ,
            Permission.CLOSE,
            Permission.TERMINATE,
            Permission.RESUME,
            Permission.REPLAY,
            Permission.RESUME_LISTENER,
        }
    ),
    Role.SENDER: _DRIVE | {Permission.OPEN},
    Role.READER: frozenset({Permission.READ}),
    Role.SESSION: _DRIVE,
}
"""What each role may do (before the session rules of :func:`allows`)."""

OWN_SESSIONS_ONLY = frozenset({Role.SENDER, Role.SESSION})
"""Roles whose session permissions hold only on their own sessions."""

KEY_ROLES = (Role.ADMIN, Role.OPERATOR, Role.SENDER, Role.READER)
"""The roles an API key may have."""


class SessionLike(Protocol):
    """What :func:`allows` reads of a session (a ``SessionRecord`` or its REST view)."""

    @property
    def id(self) -> str: ...

    @property
    def contract(self) -> str: ...

    @property
    def opened_by(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key (``id`` its stable identifier) or a session token."""

    name: str
    role: Role
    id: str
    """Recorded as the opener of the sessions it opens: a stored key's prefix, ``config`` for
    the keys of the configuration, the session's id for a session token."""
    contract: str | None = None
    """The one contract a scoped key may act on."""
    session_id: str | None = None
    """The one session a session token may act on."""


def allows(
    principal: Principal,
    permission: Permission,
    *,
    contract: str | None = None,
    session: SessionLike | None = None,
) -> bool:
    """True if ``principal`` may do ``permission`` (on ``contract``, or on ``session``).

    Without a session, a sender may only open sessions and send datagrams, and a session token
    nothing; without a contract either, a scoped key may do nothing it is scoped for.
    """
    if permission not in ROLE_PERMISSIONS[principal.role]:
        return False
    if session is not None:
        contract = session.contract
    if principal.contract is not None and contract != principal.contract:
        return False
    if principal.role not in OWN_SESSIONS_ONLY:
        return True
    if session is None:
        return principal.role is Role.SENDER and permission in (Permission.OPEN, Permission.SEND)
    if principal.role is Role.SESSION:
        return session.id == principal.session_id
    return session.opened_by == principal.id
