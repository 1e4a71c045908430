"""The SQL adapter of the store port: schema, migrations and ``SqlStore`` on SQLite and PostgreSQL.

- :mod:`~durable_sessions.store.sql.store`: ``SqlStore`` and the outbox, message and dead-letter
  repositories; :mod:`~durable_sessions.store.sql.sessions`,
  :mod:`~durable_sessions.store.sql.sequences`, :mod:`~durable_sessions.store.sql.leases` and
  :mod:`~durable_sessions.store.sql.keys` the session, sequence, lease and key repositories;
  :mod:`~durable_sessions.store.sql.work` the statements one transaction runs.
- :mod:`~durable_sessions.store.sql.schema`: the tables; :mod:`~durable_sessions.store.sql.migrate`
  runs the Alembic migrations of ``migrations/``.
- :mod:`~durable_sessions.store.sql.engine`: engines, pools and the translation of driver errors.
"""

from durable_sessions.store.sql.store import SqlStore

__all__ = ["SqlStore"]
