"""The robust AMQP connection under :class:`~durable_sessions.broker.rabbitmq.RabbitBroker`.

aio-pika's robust connection reconnects by itself and restores the robust channels opened on
it (each consumer's), consumers included. This module opens it (over ``amqps://`` with the
broker's certificate verified), tells whether it is up right now, and turns aiormq/aio-pika
errors into the library's own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aio_pika
import aiormq
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from durable_sessions.errors import BrokerError, BrokerUnavailable, ConfigurationError
from durable_sessions.settings import redact_url

DEFAULT_RECONNECT_INTERVAL = 2.0
"""Seconds between two reconnection attempts after the connection is lost."""

_UNREACHABLE = (OSError, aiormq.exceptions.ChannelInvalidStateError)
"""Errors that mean the broker cannot be reached, as opposed to refusing a request.

``OSError`` covers aiormq's ``AMQPConnectionError`` (a ``ConnectionError``) and timeouts; a
channel in an invalid state is one whose connection went away.
"""


def describe(error: BaseException) -> str:
    """A short text for an aiormq error, whose ``str`` is often just a tuple."""
    parts = [str(arg) for arg in error.args if arg not in (None, "")]
    return " ".join(parts) or type(error).__name__


def tls_context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    """The context an ``amqps://`` URL connects with: the broker's certificate and host name
    verified, against ``ca_file`` if given, else the system's CAs; None for ``amqp://``."""
    if URL(url).scheme != "amqps":
        return None
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except OSError as e:
        raise ConfigurationError(f"cannot read the broker CA file {ca_file}: {e}") from e


async def open_connection(
    url: str,
    *,
    name: str,
    connect_timeout: float,
    reconnect_interval: float,
    ca_file: str | None = None,
) -> aio_pika.RobustConnection:
    """Connect, or raise :class:`BrokerUnavailable` naming the URL without its password.

    Over ``amqps://`` the broker's certificate must verify (see :func:`tls_context`).
    """
    connection = aio_pika.RobustConnection(
        URL(url),
        client_properties={"connection_name": name},
        reconnect_interval=reconnect_interval,
        ssl_context=tls_context(url, ca_file),
    )
    try:
        await connection.connect(timeout=connect_timeout)
    except CONNECTION_EXCEPTIONS as e:  # OSError among them: refused, timed out
        await connection.close()
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {redact_url(url)}: {describe(e)}"
        ) from e
    return connection


def is_open(connection: aio_pika.RobustConnection) -> bool:
    """True while the connection is up (False while it reconnects or once closed)."""
    transport = connection.transport
    return (
        not connection.is_closed
        and not connection.close_called
        and connection.connected.is_set()
        and transport is not None
        and not transport.connection.is_closed
    )


@contextmanager
def broker_errors(action: str, url: str) -> Iterator[None]:
    """Translate driver errors raised while doing ``action`` into :class:`BrokerError`."""
    try:
        yield
    except _UNREACHABLE as e:
        raise BrokerUnavailable(
            f"cannot {action}: RabbitMQ at {redact_url(url)} is unreachable ({describe(e)})"
        ) from e
    except aiormq.exceptions.AMQPError as e:
        raise BrokerError(f"cannot {action}: {describe(e)}") from e
