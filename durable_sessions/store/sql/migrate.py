"""Apply, revert and check the Alembic migrations from code (``durable-sessions migrate``).

The migration scripts live in the repository's ``migrations/`` folder; an installed wheel
carries them as ``durable_sessions/_migrations``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from durable_sessions.errors import ConfigurationError, StoreError
from durable_sessions.store.sql.engine import create_engine, translated_errors

_PACKAGE = Path(__file__).resolve().parents[2]


def migrations_dir() -> Path:
    """Where the migration scripts are: inside the package when installed, else the repo."""
    for candidate in (_PACKAGE / "_migrations", _PACKAGE.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigurationError("migration scripts not found next to the durable_sessions package")


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest revision of the migration scripts."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise ConfigurationError("the migration scripts have no head revision")
    return head


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (None when it was never migrated)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    engine = create_engine(url)
    try:
        with translated_errors():
            async with engine.connect() as conn:
                return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    await _run(url, lambda config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` drops the schema)."""
    await _run(url, lambda config: command.downgrade(config, revision))


async def check(url: str) -> None:
    """Raise :class:`StoreError` if the models and the migrated database differ."""
    await _run(url, command.check)


async def _run(url: str, action: Callable[[Config], object]) -> None:
    config = alembic_config(url)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        action(config)

    engine = create_engine(url)
    try:
        with translated_errors():
            async with engine.begin() as conn:
                try:
                    await conn.run_sync(run)
                except Exception as e:
                    if type(e).__module__.startswith("alembic"):
                        raise StoreError(f"migration failed: {e}") from e
                    raise
    finally:
        await engine.dispose()
