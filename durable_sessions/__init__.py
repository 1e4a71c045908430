"""durable-sessions: durable, ordered, exactly-once sessions on RabbitMQ and SQL.

The names most programs need are importable from here; everything else lives in its module.
"""

from durable_sessions.contracts import SessionMode, contract, contract_of, operation
from durable_sessions.lifecycle import SessionState
from durable_sessions.services import Concurrency, Instancing, service, service_of
from durable_sessions.settings import Settings

__all__ = [
    "Concurrency",
    "Instancing",
    "SessionMode",
    "SessionState",
    "Settings",
    "contract",
    "contract_of",
    "operation",
    "service",
    "service_of",
]
