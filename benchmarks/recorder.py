"""The benchmark service: a session of one-way ``record`` calls, each carrying ~512 bytes.

Its instance state is the :class:`~benchmarks.correctness.Tally` of the numbers it applied, so
the check reads straight from the store what the service saw, in the order it saw it.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from benchmarks.correctness import Tally, observe
from durable_sessions.model.contracts import SessionMode, contract, operation
from durable_sessions.model.services import service

PAYLOAD = "x" * 480
"""With the operation name, number and envelope, a message body is about 512 bytes."""

SERVICE_PATH = "benchmarks.recorder:RecorderService"


@contract(session_mode=SessionMode.REQUIRED)
class Recorder(Protocol):
    """Numbered one-way messages in a session."""

    @operation
    async def record(self, n: int, payload: str) -> None:
        """Apply message number ``n`` of the session."""


@service(Recorder)
class RecorderService(BaseModel):
    """Keeps the tally of the numbers applied in its session."""

    count: int = 0
    last: int = 0
    disorder: int = 0

    async def record(self, n: int, payload: str) -> None:
        """Fold ``n`` into the tally."""
        tally = observe(Tally(self.count, self.last, self.disorder), n)
        self.count, self.last, self.disorder = tally.count, tally.last, tally.disorder
