"""The reliable-session binding: WS-RM sequences delivered into durable sessions.

- :mod:`~durable_sessions.reliable.calls`: how an operation call travels in a SOAP body.
- :mod:`~durable_sessions.reliable.sequences`: engine state loaded from and saved to the store.
- :mod:`~durable_sessions.reliable.host`: the RM destination of one endpoint (the server side).
- :mod:`~durable_sessions.reliable.refusals`: the faults that answer refused calls.
- :mod:`~durable_sessions.reliable.pending`: MaxPendingChannels, per endpoint and process.
- :mod:`~durable_sessions.reliable.options`: per-endpoint settings written as text.
- :mod:`~durable_sessions.reliable.wakeups`: waking stored destination sequences that are due.
- :mod:`~durable_sessions.reliable.client`: the RM source's sessions, over any link.
- :mod:`~durable_sessions.reliable.http`: ``ReliableSessionClient``, the RM source over
  HTTP.
- :mod:`~durable_sessions.reliable.amqp`: the binding over AMQP, destination and source.
"""

from durable_sessions.reliable.amqp import AmqpReliableSessionClient, queue_address
from durable_sessions.reliable.http import ReliableSessionClient
from durable_sessions.wsrm.settings import ReliableSessionSettings

__all__ = [
    "AmqpReliableSessionClient",
    "ReliableSessionClient",
    "ReliableSessionSettings",
    "queue_address",
]
