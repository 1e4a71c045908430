"""durable-sessions: durable, ordered, exactly-once sessions on RabbitMQ and SQL.

What a service author and a client need is importable from here::

    from durable_sessions import SessionMode, contract, operation, service, run_in_memory

The wings below hold the rest: :mod:`~durable_sessions.model`, :mod:`~durable_sessions.engine`,
:mod:`~durable_sessions.store`, :mod:`~durable_sessions.broker`, :mod:`~durable_sessions.wsrm`,
:mod:`~durable_sessions.reliable` and :mod:`~durable_sessions.hosting`. ``connect_client`` is
loaded when first used, so importing this package loads no database or broker driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable_sessions.engine.client import Client, ContractProxy, SessionContext
from durable_sessions.engine.runtime import Runtime
from durable_sessions.errors import (
    DurableSessionsError,
    NotInitiating,
    OperationFailed,
    SessionAborted,
    SessionFaulted,
    SessionNotOpen,
    SignatureRefused,
    TerminatingOperationCalled,
)
from durable_sessions.flow import EndSession, RejectMessage, RetryLater
from durable_sessions.hosting.testing import run_in_memory
from durable_sessions.model.contracts import SessionMode, contract, contract_of, operation
from durable_sessions.model.endpoints import PoisonPolicy, ReceiveErrorHandling
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.services import Concurrency, Instancing, service, service_of
from durable_sessions.model.signatures import Security
from durable_sessions.settings import Settings

if TYPE_CHECKING:
    from durable_sessions.hosting.composition import connect_client

__all__ = [
    "Client",
    "Concurrency",
    "ContractProxy",
    "DurableSessionsError",
    "EndSession",
    "Instancing",
    "NotInitiating",
    "OperationFailed",
    "PoisonPolicy",
    "ReceiveErrorHandling",
    "RejectMessage",
    "RetryLater",
    "Runtime",
    "Security",
    "SessionAborted",
    "SessionContext",
    "SessionFaulted",
    "SessionMode",
    "SessionNotOpen",
    "SessionState",
    "Settings",
    "SignatureRefused",
    "TerminatingOperationCalled",
    "connect_client",
    "contract",
    "contract_of",
    "operation",
    "run_in_memory",
    "service",
    "service_of",
]


def __getattr__(name: str) -> Any:
    # connect_client brings the SQL and RabbitMQ adapters: load them on first use only.
    if name == "connect_client":
        from durable_sessions.hosting.composition import connect_client

        return connect_client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
