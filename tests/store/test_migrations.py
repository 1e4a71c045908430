"""Migrations: upgrade and downgrade on SQLite and PostgreSQL, no drift, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from durable_sessions.errors import StoreError
from durable_sessions.store.sql import migrate, schema
from durable_sessions.store.sql.engine import create_engine
from durable_sessions.store.sql.store import SqlStore

TABLES = {t.name for t in schema.Base.metadata.sorted_tables}


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return names - {"alembic_version"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    make: Callable[[], str] = request.getfixturevalue("make_postgres_database")
    return make()


async def test_upgrade_check_and_downgrade(empty_url: str) -> None:
    assert await migrate.current_revision(empty_url) is None
    await migrate.upgrade(empty_url)
    assert await migrate.current_revision(empty_url) == migrate.head_revision()
    assert await table_names(empty_url) == TABLES
    await migrate.check(empty_url)
    await migrate.downgrade(empty_url, "base")
    assert await table_names(empty_url) == set()
    assert await migrate.current_revision(empty_url) is None
    await migrate.upgrade(empty_url)
    assert await table_names(empty_url) == TABLES


async def test_check_finds_drift(empty_url: str) -> None:
    await migrate.upgrade(empty_url)
    extra = sa.Table(
        "ds_unmigrated", schema.Base.metadata, sa.Column("id", sa.Integer, primary_key=True)
    )
    try:
        with pytest.raises(StoreError, match="migration failed: New upgrade operations detected"):
            await migrate.check(empty_url)
    finally:
        schema.Base.metadata.remove(extra)


T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OLD_SESSIONS = sa.Table(
    "ds_sessions",
    sa.MetaData(),
    *(sa.Column(name, sa.String) for name in ("id", "contract", "endpoint", "state")),
    sa.Column("labels", schema.JSONType),
    *(
        sa.Column(name, sa.BigInteger)
        for name in (
            "last_sent_seq",
            "last_applied_seq",
            "applied_count",
            "parked_count",
            "duplicate_count",
            "dead_count",
            "terminating_seq",
            "version",
        )
    ),
    sa.Column("inactivity_timeout_s", sa.Float),
    sa.Column("close_requested", sa.Boolean),
    *(
        sa.Column(name, schema.UTCDateTime())
        for name in ("created_at", "last_activity_at", "expires_at", "progress_at", "stalled_at")
    ),
)


async def test_0003_moves_the_send_side_and_keeps_every_row(empty_url: str) -> None:
    """The send side moves to its own table with no session or message lost, and back."""
    await migrate.upgrade(empty_url, "0002")
    engine = create_engine(empty_url)
    old = {
        "id": "s1",
        "contract": "Calculator",
        "endpoint": "calculator",
        "state": "open",
        "labels": {},
        "last_sent_seq": 5,
        "last_applied_seq": 2,
        "applied_count": 2,
        "parked_count": 0,
        "duplicate_count": 0,
        "dead_count": 0,
        "terminating_seq": 5,
        "version": 7,
        "inactivity_timeout_s": 600.0,
        "close_requested": False,
        "created_at": T0,
        "last_activity_at": T0,
        "expires_at": T0 + timedelta(seconds=600),
        "progress_at": T0,
        "stalled_at": T0 + timedelta(seconds=60),
    }
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(OLD_SESSIONS), [old])
            await conn.execute(
                sa.insert(schema.messages),
                [
                    {
                        "message_id": "m1",
                        "session_id": "s1",
                        "seq": 1,
                        "endpoint": "calculator",
                        "contract": "Calculator",
                        "operation": "add_to",
                        "args": {},
                        "status": "applied",
                        "attempts": 1,
                        "created_at": T0,
                    }
                ],
            )
        await migrate.upgrade(empty_url)
        store = SqlStore.from_url(empty_url)
        try:
            async with store.snapshot() as uow:
                session = await uow.sessions.get("s1")
                message = await uow.messages.get("m1")
        finally:
            await store.close()
        assert session is not None
        assert message is not None
        assert (session.last_sent_seq, session.terminating_seq, session.version) == (5, 5, 7)
        assert session.stall_check_at == old["stalled_at"]
        assert session.expires_at is None, "messages 3 to 5 wait, and it has no time to live"
        await migrate.downgrade(empty_url, "0002")
        async with engine.connect() as conn:
            (back,) = (await conn.execute(sa.select(OLD_SESSIONS))).mappings().all()
            messages = (
                await conn.execute(sa.select(sa.func.count()).select_from(schema.messages))
            ).scalar()
        assert dict(back) == old
        assert messages == 1
    finally:
        await engine.dispose()


async def _deadlines(engine: AsyncEngine) -> dict[str, tuple[object, object]]:
    """Both stored deadlines of every session, by id."""
    sessions, sends = schema.sessions, schema.session_sends
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(sessions.c.id, sessions.c.expires_at, sends.c.expires_at).join(
                sends, sends.c.session_id == sessions.c.id
            )
        )
        return {row[0]: (row[1], row[2]) for row in rows}


async def test_0004_lets_pending_messages_wait_until_the_time_to_live_ends(empty_url: str) -> None:
    """The stored deadlines become the ones sweeps use now, and go back on downgrade."""
    await migrate.upgrade(empty_url, "0003")
    idle = T0 + timedelta(seconds=600)
    sent_at = T0 + timedelta(seconds=30)
    ends = T0 + timedelta(days=1)

    def state(session_id: str, applied: int) -> dict[str, object]:
        return {
            "id": session_id,
            "contract": "Calculator",
            "endpoint": "calculator",
            "state": "open",
            "labels": {},
            "last_applied_seq": applied,
            **dict.fromkeys(("applied_count", "parked_count", "duplicate_count"), applied),
            "dead_count": 0,
            "inactivity_timeout_s": 600.0,
            "ttl_s": 86400.0,
            "created_at": T0,
            "last_activity_at": T0,
            "expires_at": idle,
            "close_requested": False,
            "version": 1,
        }

    def sends(session_id: str) -> dict[str, object]:
        return {
            "session_id": session_id,
            "last_sent_seq": 2,
            "last_sent_at": sent_at,
            "expires_at": sent_at + timedelta(seconds=600),
        }

    engine = create_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(schema.sessions), [state("waits", 1), state("idle", 2)])
            await conn.execute(sa.insert(schema.session_sends), [sends("waits"), sends("idle")])
        before = await _deadlines(engine)
        await migrate.upgrade(empty_url)
        assert await _deadlines(engine) == {
            "waits": (ends, ends),
            "idle": (sent_at + timedelta(seconds=600), ends),
        }
        await migrate.downgrade(empty_url, "0003")
        assert await _deadlines(engine) == before
    finally:
        await engine.dispose()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DS_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "durable_sessions", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_migrate_uses_the_sqlite_default_here(tmp_path: Path) -> None:
    first = run_cli("migrate", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "from an empty database to 0009" in first.stdout
    assert (tmp_path / "durable-sessions.db").is_file()
    again = run_cli("migrate", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already at revision" in again.stdout


@pytest.mark.postgres
def test_cli_migrate_on_postgres(make_postgres_database: Callable[[], str], tmp_path: Path) -> None:
    url = make_postgres_database().replace("+asyncpg", "")
    done = run_cli("migrate", "--database-url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "is at revision 0009" in done.stdout
    assert "postgres:***@" in done.stdout


def test_cli_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    done = run_cli("migrate", "--database-url", "postgresql://u:pw@127.0.0.1:1/x", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: database unavailable")
    assert "Traceback" not in done.stderr
    assert "pw" not in done.stderr
