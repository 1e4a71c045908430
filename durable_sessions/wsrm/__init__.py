"""WS-ReliableMessaging (February 2005 and 1.1) for the reliable-session binding.

- :mod:`~durable_sessions.wsrm.messages`: protocol messages and envelopes as plain values
  (:mod:`~durable_sessions.wsrm.lexical` checks their URIs and durations).
- :mod:`~durable_sessions.wsrm.faults`: the standard faults with WCF's reason texts.
- :mod:`~durable_sessions.wsrm.xml`: the codec, values to SOAP bytes and back (the only lxml user).
- :mod:`~durable_sessions.wsrm.settings`: ``ReliableSessionSettings`` with WCF's defaults.
- :mod:`~durable_sessions.wsrm.source`, :mod:`~durable_sessions.wsrm.destination`: the pure
  protocol engine, (state, input, now) -> (state, actions); :mod:`~durable_sessions.wsrm.actions`
  are its effects, :mod:`~durable_sessions.wsrm.ranges` its acknowledgement bookkeeping.
- :mod:`~durable_sessions.wsrm.snapshot`: sequence state to JSON-ready data and back.

Nothing is imported here, so using the engine never loads the XML library.
"""
