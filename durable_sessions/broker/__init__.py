"""The broker: the port, its in-memory twin, and the RabbitMQ adapter.

- :mod:`~durable_sessions.broker.base`: the port (``Broker``, ``Consumer``, ``Delivery``) and
  the rules every implementation enforces.
- :mod:`~durable_sessions.broker.memory`: ``MemoryBroker``, the twin for tests, a connection
  to a ``MemoryNode``.
- :mod:`durable_sessions.broker.rabbitmq`: ``RabbitBroker`` (aio-pika), loaded when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable_sessions.broker.base import Broker, Consumer, Delivery
from durable_sessions.broker.memory import MemoryBroker, MemoryNode

if TYPE_CHECKING:
    from durable_sessions.broker.rabbitmq import RabbitBroker

__all__ = ["Broker", "Consumer", "Delivery", "MemoryBroker", "MemoryNode", "RabbitBroker"]


def __getattr__(name: str) -> Any:
    # Importing the port must not load aio-pika: the adapter comes in on first use.
    if name == "RabbitBroker":
        from durable_sessions.broker.rabbitmq import RabbitBroker

        return RabbitBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
