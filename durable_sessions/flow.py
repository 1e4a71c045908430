"""Control flow a handler may raise: not errors, and never logged as errors.

The dispatcher turns each into an outcome for the message being applied::

    class OrderService(BaseModel):
        async def ship(self, order_id: str) -> None:
            if not warehouse_open():
                raise RetryLater(60)            # try this message again in a minute
            if order_id in cancelled:
                raise RejectMessage("order was cancelled")   # dead-letter it, go on
"""

from __future__ import annotations


class HandlerFlow(Exception):
    """Base of the control-flow signals a handler may raise."""


class RetryLater(HandlerFlow):
    """Apply this message again after ``delay_s`` seconds; its session waits for it.

    The attempt is not counted as a failure, and the handler's changes to the instance state
    are discarded.
    """

    def __init__(self, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError("delay_s cannot be negative")
        self.delay_s = delay_s
        super().__init__(f"retry in {delay_s:g} s")


class RejectMessage(HandlerFlow):
    """This message cannot be applied: make it a dead letter with ``reason`` and go on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class EndSession(HandlerFlow):
    """Keep this call's changes, then close the session as a terminating operation would."""
