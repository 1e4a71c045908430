"""The public surface: what the package and each family's face export, pinned.

A name added to or dropped from a face fails here first, so the surface changes on purpose.
Every name in ``__all__`` must be importable, and nothing public may be left out of it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

SURFACES = {
    "durable_sessions": [
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
    ],
    "durable_sessions.store": ["MemoryStore", "SqlStore", "Store", "UnitOfWork"],
    "durable_sessions.store.sql": ["SqlStore"],
    "durable_sessions.remote": ["RemoteClient", "RemoteSession"],
    "durable_sessions.broker": [
        "Broker",
        "Consumer",
        "Delivery",
        "MemoryBroker",
        "MemoryNode",
        "RabbitBroker",
    ],
    "durable_sessions.broker.rabbitmq": ["RabbitBroker"],
    "durable_sessions.reliable": [
        "AmqpReliableSessionClient",
        "ReliableSessionClient",
        "ReliableSessionSettings",
        "queue_address",
    ],
    "durable_sessions.wsrm.xml": [
        "AddressingVersion",
        "DecodeLimits",
        "Element",
        "Inbound",
        "SoapVersion",
        "decode",
        "decode_message",
        "encode",
        "encode_fault",
        "make_payload",
        "read_payload",
        "write_payload",
    ],
}


@pytest.mark.parametrize("module", sorted(SURFACES))
def test_the_exported_names_are_pinned_and_importable(module: str) -> None:
    face = importlib.import_module(module)
    assert sorted(face.__all__) == SURFACES[module]
    for name in face.__all__:
        assert getattr(face, name) is not None, name


def test_nothing_public_of_the_package_is_left_out_of_all() -> None:
    face = importlib.import_module("durable_sessions")
    public = {
        name
        for name, value in vars(face).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and getattr(value, "__module__", "").startswith("durable_sessions")
    }
    assert public - set(face.__all__) == set()


def test_an_unknown_name_is_an_attribute_error() -> None:
    face = importlib.import_module("durable_sessions")
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        face.nothing_here  # noqa: B018
