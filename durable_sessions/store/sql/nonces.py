"""The SQL repository of nonces seen: ``ds_session_nonces``, unique per session and nonce."""

from __future__ import annotations

import sqlalchemy as sa

from durable_sessions.store.base import NonceRepository
from durable_sessions.store.sql import schema
from durable_sessions.store.sql.work import Work


class SqlNonces(NonceRepository):
    """Nonces in ``ds_session_nonces``; the primary key refuses a second one."""

    def __init__(self, work: Work) -> None:
        self._w = work
        self._t = schema.nonces

    async def add(self, session_id: str, nonce: str, t: int) -> None:
        values = {"session_id": session_id, "nonce": nonce, "t": t}
        await self._w.execute(sa.insert(self._t).values(values), write=True)

    async def prune(self, session_id: str, before: int) -> int:
        old = sa.and_(self._t.c.session_id == session_id, self._t.c.t < before)
        result = await self._w.execute(sa.delete(self._t).where(old), write=True)
        return int(result.rowcount or 0)
