"""The calculator session from WCF's "Using Sessions" sample.

A client clears the calculator (the initiating operation), sends a series of one-way
operations, and reads the result with ``equals``, which also ends the session. The running
result is the service's instance state: it is saved with the session after every message.
``divide_by(0)`` raises, which makes it the standard poison message in tests.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from durable_sessions import SessionMode, contract, operation, service


@contract(session_mode=SessionMode.REQUIRED)
class Calculator(Protocol):
    """A calculator that keeps a running result for the length of a session."""

    @operation
    async def clear(self) -> None:
        """Start over from zero (starts the session)."""

    @operation(initiating=False)
    async def add_to(self, n: float) -> None:
        """Add ``n`` to the result."""

    @operation(initiating=False)
    async def subtract_from(self, n: float) -> None:
        """Subtract ``n`` from the result."""

    @operation(initiating=False)
    async def multiply_by(self, n: float) -> None:
        """Multiply the result by ``n``."""

    @operation(initiating=False)
    async def divide_by(self, n: float) -> None:
        """Divide the result by ``n``."""

    @operation(initiating=False, terminating=True)
    async def equals(self) -> float:
        """Return the result (ends the session)."""


@service(Calculator)
class CalculatorService(BaseModel):
    """The calculator; ``result`` is its per-session instance state."""

    result: float = 0.0

    async def clear(self) -> None:
        """Reset the result."""
        self.result = 0.0

    async def add_to(self, n: float) -> None:
        """Add ``n``."""
        self.result += n

    async def subtract_from(self, n: float) -> None:
        """Subtract ``n``."""
        self.result -= n

    async def multiply_by(self, n: float) -> None:
        """Multiply by ``n``."""
        self.result *= n

    async def divide_by(self, n: float) -> None:
        """Divide by ``n``; dividing by zero raises ``ZeroDivisionError``."""
        self.result /= n

    async def equals(self) -> float:
        """The running result."""
        return self.result
