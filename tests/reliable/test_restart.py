"""A sequence survives a restart: everything in memory is dropped and rebuilt from SQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from durable_sessions.broker.memory import MemoryNode
from durable_sessions.reliable.calls import CALL_FORMAT
from durable_sessions.store.sql.store import SqlStore
from durable_sessions.wsrm.messages import Payload, RMVersion
from tests.reliable import documents as doc
from tests.reliable.conftest import calculator_app
from tests.reliable.test_soap_endpoint import create, post, ranges, session_of, wait_closed


async def wait_applied(store: SqlStore, identifier: str, count: int) -> None:
    for _ in range(200):
        if (await session_of(store, identifier))[2] >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} messages were not applied")


async def test_a_restarted_host_resumes_the_sequence_from_sql(
    sqlite_url: str, tmp_path: Path
) -> None:
    version = RMVersion.WSRM_1_1
    store = SqlStore.from_url(sqlite_url)
    try:
        async with calculator_app(store, MemoryNode(), tmp_path) as http:
            identifier = await create(http, version, "urn:uuid:offer-restart")
            await post(http, doc.call(version, identifier, 1, "clear"))
            await post(http, doc.call(version, identifier, 3, "multiply_by", "<n>3</n>"))
            assert ranges(
                await post(http, doc.call(version, identifier, 2, "add_to", "<n>5</n>"))
            ) == [(1, 3)]
            await wait_applied(store, identifier, 3)
    finally:
        await store.close()

    store = SqlStore.from_url(sqlite_url)
    try:
        async with calculator_app(store, MemoryNode(), tmp_path) as http:
            duplicate = doc.call(version, identifier, 3, "multiply_by", "<n>3</n>")
            assert ranges(await post(http, duplicate)) == [(1, 3)]
            reply = await post(http, doc.call(version, identifier, 4, "equals"))
            assert reply is not None
            assert isinstance(reply.body, Payload)
            assert CALL_FORMAT.read_reply(reply.body).result == 15.0
            await post(http, doc.identified(version, "CloseSequence", identifier))
            await post(http, doc.identified(version, "TerminateSequence", identifier))
            _, instance, applied = await wait_closed(store, identifier)
    finally:
        await store.close()
    assert instance == {"result": 15.0}
    assert applied == 4
