"""A batch of deliveries: each as received and decoded, how each is settled, what the batch did.

The dispatcher decodes each delivery's body once (:meth:`Received.decode`), splits the batch by
session, hands each part to the applier, and settles every delivery by the part's
:class:`BatchOutcome` once its transaction committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from durable_sessions.broker.base import Delivery
from durable_sessions.errors import MessageRejected
from durable_sessions.model.wire import WireMessage


class Settlement(StrEnum):
    """What to tell the broker about a delivery once the transaction committed."""

    ACK = "ack"
    REJECT = "reject"
    HOLD = "hold"
    """Leave it unsettled: it returns to its queue when the consumer closes."""


@dataclass(frozen=True, slots=True)
class Received:
    """A delivery with its body decoded, once: the message it carries, or why it has none."""

    delivery: Delivery
    wire: WireMessage | None
    error: MessageRejected | None = None
    """Why the body could not be decoded (``wire`` is None then)."""

    @classmethod
    def decode(cls, delivery: Delivery) -> Received:
        """Decode ``delivery``'s body; a malformed one is kept with its error."""
        try:
            return cls(delivery, WireMessage.decode(delivery.body))
        except MessageRejected as error:
            return cls(delivery, None, error)

    @property
    def session_key(self) -> str:
        """What serialises its apply: its session's id, a datagram's message id, else ""."""
        if self.wire is None:
            return ""
        return self.wire.session_id or self.wire.message_id


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did: settlements and counts for metrics."""

    settlements: dict[int, Settlement] = field(default_factory=dict)
    """Settlement by position in the batch; missing positions are acked."""
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    dead: int = 0
    failed: int = 0
    listener_faulted: bool = False
    """A datagram faulted the endpoint's datagram listener, or found it faulted (held back)."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from send to apply of each applied message."""
