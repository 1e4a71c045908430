"""Broker topology of an endpoint: the names of its exchanges and queues, and message routing.

Per endpoint ``E``::

    exchange ds.E (direct) ── session.0 ─▶ ds.E.session.0 ┐
                            ── ...       ─▶ ...            │ quorum queues, x-delivery-limit,
                            ── session.N ─▶ ds.E.session.N │ dead-lettered to ds.E.dlx
                            ── datagram  ─▶ ds.E.datagram  ┘
                            ── wsrm      ─▶ ds.E.wsrm        (WS-RM envelopes, dead-lettered)
                            ── poison    ─▶ ds.E.poison      (receive_error_handling MOVE)
    exchange ds.E.dlx (direct) ── dead ─▶ ds.E.dead          (REJECT, delivery limit)

A session's messages always go to the same session queue, chosen by a stable hash of its id:
that is affinity for throughput, not what keeps order (the database does that). Session and
datagram traffic never share a queue.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from durable_sessions.errors import ConfigurationError

PREFIX = "ds"
DEFAULT_SESSION_QUEUES = 4
DEFAULT_DELIVERY_LIMIT = 50
"""The broker's last resort against a message that kills its worker before any commit."""

DATAGRAM_KEY = "datagram"
WSRM_KEY = "wsrm"
POISON_KEY = "poison"
DEAD_KEY = "dead"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


def check_endpoint_name(name: str) -> str:
    """``name`` if it can name an endpoint (lowercase letters, digits, ``-`` and ``_``)."""
    if not _NAME.match(name):
        raise ConfigurationError(
            f"endpoint name {name!r} must be 1-100 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One durable quorum queue and the routing key that binds it to the endpoint exchange."""

    name: str
    routing_key: str
    dead_lettered: bool
    """True when rejected and over-delivered messages go to the dead-letter exchange."""


@dataclass(frozen=True, slots=True)
class EndpointTopology:
    """The exchanges and queues of one endpoint."""

    endpoint: str
    session_queue_count: int = DEFAULT_SESSION_QUEUES
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def __post_init__(self) -> None:
        check_endpoint_name(self.endpoint)
        if not 1 <= self.session_queue_count <= 256:
            raise ConfigurationError("session queues per endpoint must be between 1 and 256")
        if self.delivery_limit < 1:
            raise ConfigurationError("the delivery limit must be at least 1")

    @property
    def exchange(self) -> str:
        """The direct exchange every message of the endpoint is published to."""
        return f"{PREFIX}.{self.endpoint}"

    @property
    def dead_letter_exchange(self) -> str:
        """Where the broker sends rejected and over-delivered messages."""
        return f"{PREFIX}.{self.endpoint}.dlx"

    def session_queue(self, index: int) -> QueueSpec:
        """Session queue number ``index``."""
        return QueueSpec(f"{self.exchange}.session.{index}", f"session.{index}", True)

    @property
    def session_queues(self) -> tuple[QueueSpec, ...]:
        """All session queues."""
        return tuple(self.session_queue(i) for i in range(self.session_queue_count))

    @property
    def datagram_queue(self) -> QueueSpec:
        """The queue of datagrams (messages outside sessions)."""
        return QueueSpec(f"{self.exchange}.datagram", DATAGRAM_KEY, True)

    @property
    def wsrm_queue(self) -> QueueSpec:
        """The queue of WS-RM envelopes for the reliable-session binding over AMQP."""
        return QueueSpec(f"{self.exchange}.wsrm", WSRM_KEY, True)

    @property
    def poison_queue(self) -> QueueSpec:
        """Where receive_error_handling MOVE puts poison messages, for a poison service."""
        return QueueSpec(f"{self.exchange}.poison", POISON_KEY, False)

    @property
    def dead_letter_queue(self) -> QueueSpec:
        """The queue bound to the dead-letter exchange."""
        return QueueSpec(f"{self.exchange}.dead", DEAD_KEY, False)

    @property
    def queues(self) -> tuple[QueueSpec, ...]:
        """Every queue bound to the endpoint exchange (not the dead-letter queue)."""
        return (*self.session_queues, self.datagram_queue, self.wsrm_queue, self.poison_queue)

    def session_routing_key(self, session_id: str) -> str:
        """The routing key of a session's messages: a stable hash of its id."""
        index = zlib.crc32(session_id.encode()) % self.session_queue_count
        return f"session.{index}"
