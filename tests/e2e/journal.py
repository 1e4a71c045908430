"""The service the end-to-end tests run in real worker processes.

A session's instance state records every value it receives, in order, and the terminating call
returns it: a session whose final state equals exactly what was sent had no message lost,
applied twice or applied out of order.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from durable_sessions import SessionMode, contract, operation, service

SERVICE_PATH = "tests.e2e.journal:JournalService"
"""What worker processes are given as ``--service``."""


@contract(session_mode=SessionMode.REQUIRED)
class Journal(Protocol):
    """A conversation that writes values and finally reads them all back."""

    @operation
    async def begin(self, name: str) -> None: ...

    @operation(initiating=False)
    async def write(self, value: int) -> None: ...

    @operation(initiating=False)
    async def fail(self, why: str) -> int: ...

    @operation(initiating=False, terminating=True)
    async def finish(self) -> list[int]: ...


@service(Journal)
class JournalService(BaseModel):
    """Keeps the session's name and every written value (PER_SESSION instance state)."""

    name: str = ""
    values: list[int] = []

    async def begin(self, name: str) -> None:
        self.name = name

    async def write(self, value: int) -> None:
        self.values.append(value)

    async def fail(self, why: str) -> int:
        raise ValueError(why)

    async def finish(self) -> list[int]:
        return self.values
