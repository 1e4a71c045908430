"""Worker processes: consume an endpoint's queues and apply its messages.

``python -m workers`` (or ``durable-sessions worker``) runs one process that serves the
configured services, with an outbox relay and a sweeper, until SIGTERM or SIGINT.
"""
