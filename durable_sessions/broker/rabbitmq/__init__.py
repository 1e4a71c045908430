"""The RabbitMQ adapter of the broker port (:mod:`durable_sessions.broker.base`), on aio-pika."""

from durable_sessions.broker.rabbitmq.broker import RabbitBroker

__all__ = ["RabbitBroker"]
