"""One connection in one transaction, shared by the SQL repositories of a unit of work."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from durable_sessions.errors import StoreError
from durable_sessions.model.records import MessageRecord, SessionRecord
from durable_sessions.store.sql.engine import translated_errors

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


def _parameter(table: sa.Table, name: str) -> str:
    """The parameter giving values of column ``name`` of ``table`` to a row statement."""
    return f"a_{table.name}_{name}"


class _RowsStatement(NamedTuple):
    """A statement writing rows from parameters (:func:`_parameter`), and how to pass values."""

    table: sa.Table
    statement: sa.Insert | sa.Update
    names: tuple[str, ...]
    """The columns it takes values of."""
    encoders: dict[str, Callable[[Any], Any]]
    """Per column whose values are passed as their JSON text."""


_ROW_NUMBER = "ds_row"
"""The column numbering the unnested rows in parameter order."""


def _unnested(
    table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect
) -> tuple[dict[str, sa.ColumnElement[Any]], dict[str, Callable[[Any], Any]]]:
    """The rows of array parameters of ``names`` as columns of a table, and the JSON encoders.

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
            _parameter(table, name),
            type_=postgresql.ARRAY(sa.Text() if name in encoders else table.c[name].type),
        )
        for name in names
    ]
    given = (
        sa.func.unnest(*arrays)
        .table_valued(*names, with_ordinality=_ROW_NUMBER)
        .render_derived(name="given")
    )
    columns: dict[str, sa.ColumnElement[Any]] = {
        name: sa.cast(given.c[name], postgresql.JSONB) if name in encoders else given.c[name]
        for name in names
    }
    columns[_ROW_NUMBER] = given.c[_ROW_NUMBER]
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
            .values({name: sa.bindparam(_parameter(table, name)) for name in columns})
            .where(table.c[key] == sa.bindparam(_parameter(table, key)))
        )
        return _RowsStatement(table, statement, names, {})
    given, encoders = _unnested(table, names, dialect)
    statement = (
        sa.update(table)
        .values({name: given[name] for name in columns})
        .where(table.c[key] == given[key])
    )
    return _RowsStatement(table, statement, names, encoders)


@functools.cache
def _insert_rows(
    table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect, serial: str | None
) -> _RowsStatement:
    """Insert rows of ``table`` giving ``names`` (PostgreSQL: see _unnested), in parameter
    order, returning their ``serial`` column if given."""
    if dialect.name != "postgresql":
        statement = sa.insert(table).values(
            {name: sa.bindparam(_parameter(table, name)) for name in names}
        )
        if serial is not None:
            statement = statement.returning(table.c[serial], sort_by_parameter_order=True)
        return _RowsStatement(table, statement, names, {})
    given, encoders = _unnested(table, names, dialect)
    rows = sa.select(*(given[name] for name in names)).order_by(given[_ROW_NUMBER])
    statement = sa.insert(table).from_select(names, rows)
    if serial is not None:
        statement = statement.returning(table.c[serial])
    return _RowsStatement(table, statement, names, encoders)


@functools.lru_cache(maxsize=256)
def _with_writes(
    statement: sa.Insert | None, writes: tuple[sa.Insert | sa.Update, ...]
) -> sa.Executable:
    """``statement`` with ``writes`` run as part of it (or the writes alone, for None).

    Bounded: statements built anew per call (with their values inline) come and go.
    """
    if statement is None and len(writes) == 1:
        return writes[0]
    ctes = [write.cte(f"ds_write_{i}") for i, write in enumerate(writes)]
    if statement is None:
        return sa.select(sa.literal(1)).add_cte(*ctes)
    return statement.add_cte(*ctes)


class Work:
    """One connection in one transaction; spoiled by the first store error.

    On PostgreSQL, row writes (:meth:`insert_rows`, :meth:`update_rows`) wait to go with the
    next statement, as common table expressions, when that statement inserts into another table;
    before any other statement, a second write to the same table, and the commit, they go by
    themselves (all in one statement). A send then costs two round trips fewer. Errors of a
    waiting write surface at the statement that carries it, in the same transaction.
    """

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
        self._waiting: list[tuple[_RowsStatement, dict[str, Any]]] = []
        """Row writes not sent yet, with their parameters."""

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
        if self._waiting:
            if isinstance(statement, sa.Insert) and not self._waits_for(statement.table):
                parameters = {**(parameters or {}), **self._waiting_parameters()}
                statement = _with_writes(statement, self._take_waiting())
            else:
                await self.flush()
        return await self._run(statement, parameters)

    async def flush(self) -> None:
        """Send the row writes still waiting."""
        if self._waiting:
            parameters = self._waiting_parameters()
            await self._run(_with_writes(None, self._take_waiting()), parameters)

    def _waits_for(self, table: sa.TableClause) -> bool:
        return any(write.table is table for write, _ in self._waiting)

    def _waiting_parameters(self) -> dict[str, Any]:
        return {
            name: value for _, parameters in self._waiting for name, value in parameters.items()
        }

    def _take_waiting(self) -> tuple[sa.Insert | sa.Update, ...]:
        writes = tuple(write.statement for write, _ in self._waiting)
        self._waiting.clear()
        return writes

    async def _run(self, statement: sa.Executable, parameters: dict[str, Any] | None) -> Any:
        try:
            with translated_errors():
                return await self.conn.execute(statement, parameters)
        except StoreError as e:
            self.spoiled = e
            raise

    async def execute_many(self, statement: sa.Executable, rows: list[dict[str, Any]]) -> Any:
        self.check(write=True)
        await self.flush()
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
        await self._write_rows(_insert_rows(table, tuple(rows[0]), self.conn.dialect, None), rows)

    async def insert_numbered_rows(
        self, table: sa.Table, serial: str, rows: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """Insert rows into ``table`` in order; the values its ``serial`` column gave them."""
        self.check(write=True)
        if not rows:
            return []
        write = _insert_rows(table, tuple(rows[0]), self.conn.dialect, serial)
        if self.dialect != "postgresql":
            result = await self.execute_many(write.statement, self._row_parameters(write, rows))
            return [row[0] for row in result]
        result = await self.execute(write.statement, self._array_parameters(write, rows))
        # A sequence numbers rows in the order they are inserted: the parameters' order.
        return sorted(row[0] for row in result)

    async def _write_rows(self, write: _RowsStatement, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.dialect != "postgresql":
            await self.execute_many(write.statement, self._row_parameters(write, rows))
            return
        self.check(write=True)
        if self._waits_for(write.table):
            await self.flush()
        self._waiting.append((write, self._array_parameters(write, rows)))

    @staticmethod
    def _row_parameters(
        write: _RowsStatement, rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        table = write.table
        return [{_parameter(table, name): row[name] for name in write.names} for row in rows]

    @staticmethod
    def _array_parameters(
        write: _RowsStatement, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, list[Any]]:
        arrays: dict[str, list[Any]] = {}
        for name in write.names:
            encode = write.encoders.get(name)
            values = [row[name] for row in rows]
            arrays[_parameter(write.table, name)] = (
                values if encode is None else [encode(v) for v in values]
            )
        return arrays

    def fail(self, error: StoreError) -> StoreError:
        self.spoiled = error
        return error
