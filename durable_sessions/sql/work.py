"""One connection in one transaction, shared by the SQL repositories of a unit of work."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from durable_sessions.errors import StoreError
from durable_sessions.records import MessageRecord, SessionRecord
from durable_sessions.sql.engine import translated_errors

IDS = "ds_ids"
"""The parameter of :func:`one_of`: the values to match."""


def one_of(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[bool]:
    """``column`` is one of the values of parameter :data:`IDS`, in ``dialect``.

    On PostgreSQL the values are one array parameter, so the statement is the same for any number
    of them (an ``IN`` list is rendered anew, and prepared anew, for every count).
    """
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(IDS, type_=postgresql.ARRAY(column.type)))
    return column.in_(sa.bindparam(IDS, expanding=True))


class Work:
    """One connection in one transaction; spoiled by the first store error."""

    def __init__(self, conn: AsyncConnection, *, writable: bool) -> None:
        self.conn = conn
        self.dialect: str = conn.dialect.name
        self.writable = writable
        self.spoiled: StoreError | None = None
        self.sessions: dict[str, SessionRecord] = {}
        """Sessions this transaction has read or written, as it last read or wrote them."""
        self.state_locked: set[str] = set()
        """Sessions whose state this transaction holds locked."""
        self.sends_locked: set[str] = set()
        """Sessions whose send side this transaction holds locked."""
        self.known_messages: dict[str, MessageRecord] = {}
        """Messages this transaction has read or written, as they are now in it."""

    def seen(
        self, session: SessionRecord, *, state_locked: bool = False, sends_locked: bool = False
    ) -> None:
        """Remember ``session`` as read or written, and the locks taken on it."""
        self.sessions[session.id] = session
        if state_locked:
            self.state_locked.add(session.id)
        if sends_locked:
            self.sends_locked.add(session.id)

    def check(self, *, write: bool = False) -> None:
        if self.spoiled is not None:
            raise StoreError(
                f"this transaction failed earlier ({self.spoiled}); leave the block to roll back"
            )
        if write and not self.writable:
            raise StoreError("cannot write in a read-only snapshot")

    async def execute(
        self,
        statement: sa.Executable,
        parameters: dict[str, Any] | None = None,
        *,
        write: bool = False,
    ) -> Any:
        self.check(write=write)
        try:
            with translated_errors():
                return await self.conn.execute(statement, parameters)
        except StoreError as e:
            self.spoiled = e
            raise

    async def execute_many(self, statement: sa.Executable, rows: list[dict[str, Any]]) -> Any:
        self.check(write=True)
        try:
            with translated_errors():
                return await self.conn.execute(statement, rows)
        except StoreError as e:
            self.spoiled = e
            raise

    def fail(self, error: StoreError) -> StoreError:
        self.spoiled = error
        return error
