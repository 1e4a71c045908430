"""Async engines for SQLite and PostgreSQL, and the translation of driver errors.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit survives power loss) and write
transactions start with ``BEGIN IMMEDIATE``, so two writers queue on the busy timeout instead of
failing when one upgrades a read lock. A pooled PostgreSQL connection left unused for a while
is checked before use, so a database restart while a process is quiet costs a reconnect, not an
error; a connection in steady use is not checked (a check is three round trips, as many as the
rest of a send), and the first one that finds the database gone recycles the whole pool.

PostgreSQL connections plan every execution of a prepared statement for its parameters
(``plan_cache_mode=force_custom_plan``). The default keeps a generic plan once the first few
executions suggest it: prepared while the tables are small, that plan scans them whole, and a
pooled connection goes on scanning as they grow until the next ANALYZE. Planning these short
statements costs nothing measurable next to their round trip.

libpq's ``sslmode``/``sslrootcert`` in a PostgreSQL URL become asyncpg's ``ssl`` argument
(:mod:`~durable_sessions.store.sql.tls`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from durable_sessions.errors import StoreError, StoreUnavailable, UniquenessViolation
from durable_sessions.settings import redact_url
from durable_sessions.store.sql.tls import ssl_argument

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "ds_write"
CHECK_IDLE_AFTER_S = 1.0
"""A pooled PostgreSQL connection unused for longer than this is checked before it is used."""
_CHECKED_IN_AT = "ds_checked_in_at"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        plain, tls = ssl_argument(make_url(url))
        engine = create_async_engine(
            plain,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_use_lifo=True,
            connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}, **tls},
        )
        _check_idle_connections(engine)
        return engine
    raise StoreError(f"unsupported database {redact_url(url)!r}: use SQLite or PostgreSQL")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not open transactions by itself: we emit BEGIN in _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _check_idle_connections(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool

    @sa.event.listens_for(pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @sa.event.listens_for(pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.pop(_CHECKED_IN_AT, None)
        if checked_in_at is None or time.monotonic() - checked_in_at <= CHECK_IDLE_AFTER_S:
            return
        try:
            dbapi_connection.ping()
        except Exception as e:
            # The pool replaces this connection, and every other one opened before now.
            raise sa.exc.InvalidatePoolError(f"idle connection lost: {e}") from e


def _is_unique_violation(error: sa.exc.IntegrityError) -> bool:
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if code is not None:
        return bool(code == "23505")
    text = str(error.orig).lower()
    return "unique" in text or "duplicate key" in text or "primary key" in text


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn driver errors into the store's errors (``raise ... from``)."""
    try:
        yield
    except sa.exc.IntegrityError as e:
        if _is_unique_violation(e):
            raise UniquenessViolation(str(e.orig)) from e
        raise StoreError(f"integrity rule broken: {e.orig}") from e
    except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError, TimeoutError) as e:
        raise StoreUnavailable(f"database unavailable: {_short(e)}") from e
    except sa.exc.DBAPIError as e:
        if e.connection_invalidated:
            raise StoreUnavailable(f"database connection lost: {_short(e)}") from e
        raise StoreError(f"database error: {_short(e)}") from e


def _short(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    return str(orig if orig is not None else error).splitlines()[0][:300]
