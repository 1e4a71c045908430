"""The engine: sending, the outbox, applying in order, dispatching, sweeping, control, the client.

- :mod:`~durable_sessions.engine.sending`: open a session, send a message, in one transaction.
- :mod:`~durable_sessions.engine.outbox`: outbox entries, the relay that publishes them, and
  :func:`~durable_sessions.engine.outbox.publish_after_commit`.
- :mod:`~durable_sessions.engine.applying`: apply a batch of deliveries, in order, exactly once;
  :mod:`~durable_sessions.engine.attempts` runs one message's retries.
- :mod:`~durable_sessions.engine.instancing`: the worker's instances and WCF's throttles;
  :mod:`~durable_sessions.engine.singleton` the lease of a SINGLE service.
- :mod:`~durable_sessions.engine.dispatcher`: consume, apply, commit, then settle.
- :mod:`~durable_sessions.engine.sweeper`: expiry, scheduled retries, stalled sessions.
- :mod:`~durable_sessions.engine.control`: close, terminate, resume, expire, replay.
- :mod:`~durable_sessions.engine.client`: the Python client's typed proxies.
- :mod:`~durable_sessions.engine.runtime`: all of them serving endpoints in one process.

It works through the ports only (:mod:`durable_sessions.store.base`,
:mod:`durable_sessions.broker.base`) and never names an adapter.
"""
