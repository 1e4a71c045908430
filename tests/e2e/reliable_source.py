"""A WS-RM source in a process of its own: a journal written through a reliable-session client.

``python -m tests.e2e.reliable_source --url URL --key KEY --store SQLITE_URL --writes N``
(over HTTP; with ``--broker AMQP_URL``, ``--url`` is the destination's AMQP address) opens a
sequence (printing ``sequence <identifier>``), calls ``begin``, then ``write(0..N-1)``
(printing ``wrote <value>`` after each) and ``finish``, closes the sequence and prints
``finished <values as JSON>``. The sequence state lives in the SQL store, so after a ``kill -9``
``--resume <identifier>`` continues it: the calls the stored sequence carried are not made again
(message 1 is ``begin``, message ``v + 2`` is ``write(v)``), and the ones not yet acknowledged
are retransmitted by the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.reliable.amqp import AmqpReliableSessionClient
from durable_sessions.reliable.client import ReliableClient
from durable_sessions.reliable.http import ReliableSessionClient
from durable_sessions.store.sql.store import SqlStore
from durable_sessions.wsrm.settings import ReliableSessionSettings
from tests.e2e.journal import Journal

SETTINGS = ReliableSessionSettings(initial_retry_interval=0.2, max_retry_count=12)
"""Retransmit soon after a loss, and keep trying through a restart of the destination."""
SEND_TIMEOUT_S = 60.0


@contextlib.asynccontextmanager
async def connected(
    url: str, key: str, broker: str | None, store: SqlStore
) -> AsyncIterator[ReliableClient]:
    """The client of ``url``: over AMQP when a ``broker`` is given, else over HTTP."""
    if broker is None:
        async with ReliableSessionClient(
            url,
            Journal,
            store=store,
            headers={"Authorization": f"Bearer {key}"},
            settings=SETTINGS,
            send_timeout_s=SEND_TIMEOUT_S,
        ) as client:
            yield client
        return
    connection = await RabbitBroker.connect(broker)
    try:
        async with AmqpReliableSessionClient(
            url,
            Journal,
            broker=connection,
            store=store,
            settings=SETTINGS,
            send_timeout_s=SEND_TIMEOUT_S,
        ) as amqp_client:
            yield amqp_client
    finally:
        await connection.close()


async def write_journal(
    url: str, key: str, broker: str | None, store_url: str, writes: int, resume: str | None
) -> None:
    """Write the journal (or finish the stored sequence ``resume``), printing progress."""
    store = SqlStore.from_url(store_url)
    try:
        async with connected(url, key, broker, store) as client:
            session = client.session(resume=resume)
            journal = await session.open()
            print(f"sequence {session.identifier}", flush=True)
            if resume is None:
                await journal.begin("reliable")
            for value in range(max(session.sent - 1, 0), writes):
                await journal.write(value)
                print(f"wrote {value}", flush=True)
            values = await journal.finish()
            await session.close()
            print(f"finished {json.dumps(values)}", flush=True)
    finally:
        await store.close()


def main() -> None:
    """Parse the command line and write the journal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the SOAP endpoint, or AMQP address")
    parser.add_argument("--key", default="", help="the bearer key (over HTTP)")
    parser.add_argument("--broker", help="the AMQP URL, to send over AMQP")
    parser.add_argument("--store", required=True, help="SQL store URL of the sequence state")
    parser.add_argument("--writes", type=int, required=True, help="values to write")
    parser.add_argument("--resume", help="identifier of a stored sequence to continue")
    args = parser.parse_args()
    asyncio.run(
        write_journal(args.url, args.key, args.broker, args.store, args.writes, args.resume)
    )


if __name__ == "__main__":
    main()
