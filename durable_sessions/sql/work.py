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


class _RowsStatement(NamedTuple):
    """A statement writing rows from parameters ``a_<column>``, and how to pass values."""

    statement: sa.Insert | sa.Update
    names: tuple[str, ...]
    """The columns it takes values of."""
    encoders: dict[str, Callable[[Any], Any]]
    """Per column whose values are passed as their JSON text."""


def _unnested(
    table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect
) -> tuple[dict[str, sa.ColumnElement[Any]], dict[str, Callable[[Any], Any]]]:
    """The rows of array parameters ``a_<name>`` as columns of a table, and the JSON encoders.

    One array per column, unnested into rows, makes one statement for any number of rows (many
    single-row statements cost a round of parsing, planning and a message each). JSON goes as
    text, cast back in the statement: in an array parameter a JSON list would be taken for a
    dimension of the array.
    """
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
    columns: dict[str, sa.ColumnElement[Any]] = {
        name: sa.cast(given.c[name], postgresql.JSONB) if name in encoders else given.c[name]
        for name in names
    }
    return columns, encoders


@functools.cache
def _update_rows(
    table: sa.Table, key: str, columns: tuple[str, ...], dialect: sa.Dialect
) -> _RowsStatement:
    """Set ``columns`` of the rows of ``table`` found by ``key`` (PostgreSQL: see _unnested)."""
    names = (key, *columns)
    if dialect.name != "postgresql":
        statement = (
            sa.update(table)
            .values({name: sa.bindparam(f"a_{name}") for name in columns})
            .where(table.c[key] == sa.bindparam(f"a_{key}"))
        )
        return _RowsStatement(statement, names, {})
    given, encoders = _unnested(table, names, dialect)
    statement = (
        sa.update(table)
        .values({name: given[name] for name in columns})
        .where(table.c[key] == given[key])
    )
    return _RowsStatement(statement, names, encoders)


@functools.cache
def _insert_rows(table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect) -> _RowsStatement:
    """Insert rows of ``table`` giving ``names`` (PostgreSQL: see _unnested)."""
    if dialect.name != "postgresql":
        statement = sa.insert(table).values({name: sa.bindparam(f"a_{name}") for name in names})
        return _RowsStatement(statement, names, {})
    given, encoders = _unnested(table, names, dialect)
    statement = sa.insert(table).from_select(names, sa.select(*given.values()))
    return _RowsStatement(statement, names, encoders)


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
        columns = tuple(name for name in rows[0] if name != key) if rows else ()
        if not columns:
            self.check(write=True)
            return
        await self._write_rows(_update_rows(table, key, columns, self.conn.dialect), rows)

    async def insert_rows(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows into ``table``; all give the same columns."""
        if not rows:
            self.check(write=True)
            return
        await self._write_rows(_insert_rows(table, tuple(rows[0]), self.conn.dialect), rows)

    async def _write_rows(self, write: _RowsStatement, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.dialect != "postgresql":
            await self.execute_many(
                write.statement, [{f"a_{name}": row[name] for name in write.names} for row in rows]
            )
            return
        arrays: dict[str, list[Any]] = {}
        for name in write.names:
            encode = write.encoders.get(name)
            values = [row[name] for row in rows]
            arrays[f"a_{name}"] = values if encode is None else [encode(v) for v in values]
        await self.execute(write.statement, arrays, write=True)

    def fail(self, error: StoreError) -> StoreError:
        self.spoiled = error
        return error
