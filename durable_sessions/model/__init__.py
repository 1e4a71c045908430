"""The model: what users declare and what the store keeps, as plain values and rules.

- :mod:`~durable_sessions.model.contracts`: ``@contract``, ``@operation``, ``SessionMode``.
- :mod:`~durable_sessions.model.services`: ``@service``, ``Instancing``, ``Concurrency``.
- :mod:`~durable_sessions.model.endpoints`: a contract served on a binding, with its poison
  policy; :mod:`~durable_sessions.model.topology` names its exchanges and queues.
- :mod:`~durable_sessions.model.lifecycle`: session states and the transition table.
- :mod:`~durable_sessions.model.records`: sessions, messages, outbox entries, dead letters and
  sequences as the store keeps them; :mod:`~durable_sessions.model.wire`, a message on the broker.

It imports nothing from the other wings but the WS-RM protocol's values.
"""
