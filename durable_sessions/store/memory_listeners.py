"""The in-memory twin's faulted datagram listeners (a part of :mod:`durable_sessions.store.memory`).

It works on the twin's transaction through :class:`Work`, the little of it it needs, so the
twin imports this module and not the reverse.
"""

from __future__ import annotations

from typing import Any, Protocol

from durable_sessions.errors import StoreError, UniquenessViolation
from durable_sessions.model.records import ListenerFault
from durable_sessions.store.base import ListenerFaultRepository


class Work(Protocol):
    """What the listener faults use of the twin's transaction."""

    tables: Any

    def check(self) -> None:
        """Raise if the transaction is spoiled."""

    def table(self, name: str) -> Any:
        """A table to write to."""

    def fail(self, error: StoreError) -> StoreError:
        """Spoil the transaction with ``error``, and return it to raise."""


class MemoryListenerFaults(ListenerFaultRepository):
    """Faults by endpoint name."""

    def __init__(self, work: Work) -> None:
        self._w = work

    async def add(self, fault: ListenerFault) -> None:
        table = self._w.table("listener_faults")
        if fault.endpoint in table:
            raise self._w.fail(
                UniquenessViolation(f"the listener of {fault.endpoint!r} is faulted already")
            )
        table[fault.endpoint] = fault

    async def get(self, endpoint: str, *, lock: bool = False) -> ListenerFault | None:
        self._w.check()
        found: ListenerFault | None = self._w.tables.listener_faults.get(endpoint)
        return found

    async def remove(self, endpoint: str) -> None:
        table = self._w.table("listener_faults")
        if table.pop(endpoint, None) is None:
            raise self._w.fail(StoreError(f"the listener of {endpoint!r} is not faulted"))

    async def all(self) -> list[ListenerFault]:
        self._w.check()
        faults: list[ListenerFault] = list(self._w.tables.listener_faults.values())
        return sorted(faults, key=lambda f: f.endpoint)
