"""The RabbitMQ adapter of the broker port (:mod:`durable_sessions.transport`), on aio-pika."""

from durable_sessions.rabbitmq.transport import RabbitTransport

__all__ = ["RabbitTransport"]
