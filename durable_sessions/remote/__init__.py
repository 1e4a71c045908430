"""The control plane from Python, over its REST API: :class:`RemoteClient`."""

from durable_sessions.remote.client import RemoteClient, RemoteSession

__all__ = ["RemoteClient", "RemoteSession"]
