"""One connection in one transaction, shared by the SQL repositories of a unit of work."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

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


class _RowsUpdate(NamedTuple):
    """A statement updating rows from parameters ``a_<column>``, and how to pass values."""

    statement: sa.Update
    encoders: dict[str, Callable[[Any], Any]]
    """Per column whose values are passed as their JSON text."""


@functools.cache
def _update_rows(
    table: sa.Table, key: str, columns: tuple[str, ...], dialect: sa.Dialect
) -> _RowsUpdate:
    """Set ``columns`` of the rows of ``table`` found by ``key``.

    On PostgreSQL the parameters are one array per column, unnested into rows: one statement
    updates any number of rows (as many single-row updates cost a round of parsing, planning and
    a message each). JSON goes as text, cast back in the statement: in an array parameter a JSON
    list would be taken for a dimension of the array.
    """
    if dialect.name != "postgresql":
        return _RowsUpdate(
            sa.update(table)
            .values({name: sa.bindparam(f"a_{name}") for name in columns})
            .where(table.c[key] == sa.bindparam(f"a_{key}")),
            {},
        )
    names = (key, *columns)
    encoders: dict[str, Callable[[Any], Any]] = {}
    for name in names:
        column_type = table.c[name].type
        if isinstance(column_type, sa.JSON):
            encode = column_type.dialect_impl(dialect).bind_processor(dialect)
            if encode is None:
                raise StoreError(f"no JSON encoding for {table.name}.{name}")
            encoders[name] = encode
    arrays = [
        sa.bindparam(
            f"a_{name}",
            type_=postgresql.ARRAY(sa.Text() if name in encoders else table.c[name].type),
        )
        for name in names
    ]
    given = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="given")
    values = {
        name: sa.cast(given.c[name], postgresql.JSONB) if name in encoders else given.c[name]
        for name in columns
    }
    statement = sa.update(table).values(values).where(table.c[key] == given.c[key])
    return _RowsUpdate(statement, encoders)


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

    async def update_rows(
        self, table: sa.Table, key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Update rows of ``table`` by their distinct ``key`` values; all set the same columns."""
        if not rows:
            self.check(write=True)
            return
        columns = tuple(name for name in rows[0] if name != key)
        if not columns:
            return
        update = _update_rows(table, key, columns, self.conn.dialect)
        names = (key, *columns)
        if self.dialect == "postgresql":
            arrays: dict[str, list[Any]] = {}
            for name in names:
                encode = update.encoders.get(name)
                values = [row[name] for row in rows]
                arrays[f"a_{name}"] = values if encode is None else [encode(v) for v in values]
            await self.execute(update.statement, arrays, write=True)
        else:
            await self.execute_many(
                update.statement, [{f"a_{name}": row[name] for name in names} for row in rows]
            )

    def fail(self, error: StoreError) -> StoreError:
        self.spoiled = error
        return error
