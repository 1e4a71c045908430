"""The store: the port, its in-memory twin, and the SQL adapter.

- :mod:`~durable_sessions.store.base`: the port (``Store``, ``UnitOfWork`` and the
  repositories) and the rules every implementation enforces.
- :mod:`~durable_sessions.store.memory`: ``MemoryStore``, the twin for tests.
- :mod:`durable_sessions.store.sql`: ``SqlStore`` on SQLite and PostgreSQL (SQLAlchemy), loaded
  when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable_sessions.store.base import Store, UnitOfWork
from durable_sessions.store.memory import MemoryStore

if TYPE_CHECKING:
    from durable_sessions.store.sql import SqlStore

__all__ = ["MemoryStore", "SqlStore", "Store", "UnitOfWork"]


def __getattr__(name: str) -> Any:
    # Importing the port must not load SQLAlchemy: the adapter comes in on first use.
    if name == "SqlStore":
        from durable_sessions.store.sql import SqlStore

        return SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
