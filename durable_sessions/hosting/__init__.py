"""Hosting: building processes from settings, and what every process of the service shares.

- :mod:`~durable_sessions.hosting.composition`: the store, the broker connection, the served
  endpoints and a relayed client, chosen from ``Settings`` (``connect_client``).
- :mod:`~durable_sessions.hosting.testing`: ``run_in_memory``, a runtime on the twins.
- :mod:`~durable_sessions.hosting.metrics` (Prometheus), :mod:`~durable_sessions.hosting.logs`,
  :mod:`~durable_sessions.hosting.apikeys`.

Only the composition roots (``api/``, ``workers/``, the command line) import this wing, and the
package's face re-exports ``run_in_memory`` and ``connect_client``. Nothing is imported here:
``run_in_memory`` needs no adapter.
"""
