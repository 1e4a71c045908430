"""Migrations: upgrade and downgrade on SQLite and PostgreSQL, no drift, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from durable_sessions.errors import StoreError
from durable_sessions.sql import migrate, schema
from durable_sessions.sql.engine import create_engine

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
    assert "from an empty database to 0002" in first.stdout
    assert (tmp_path / "durable-sessions.db").is_file()
    again = run_cli("migrate", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already at revision" in again.stdout


@pytest.mark.postgres
def test_cli_migrate_on_postgres(make_postgres_database: Callable[[], str], tmp_path: Path) -> None:
    url = make_postgres_database().replace("+asyncpg", "")
    done = run_cli("migrate", "--database-url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "is at revision 0002" in done.stdout
    assert "postgres:***@" in done.stdout


def test_cli_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    done = run_cli("migrate", "--database-url", "postgresql://u:pw@127.0.0.1:1/x", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: database unavailable")
    assert "Traceback" not in done.stderr
    assert "pw" not in done.stderr
