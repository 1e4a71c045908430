"""The queued-session client's lifetime (WCF's Close, Abort and Faulted), on every stack."""

from __future__ import annotations

import pytest

from durable_sessions.engine.client import Client
from durable_sessions.engine.control import terminate_session
from durable_sessions.errors import OperationFailed, SessionNotOpen
from durable_sessions.hosting.testing import FAST_POISON
from durable_sessions.model.endpoints import Endpoints
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import utcnow
from tests.e2e.journal import Journal, JournalService
from tests.engine.test_session_behaviour import session_of
from tests.stacks import Stack

pytestmark = pytest.mark.timeout(90)


async def test_closing_a_faulted_session_raises_faulted_and_leaves_it_to_the_operator(
    stack: Stack,
) -> None:
    endpoint = stack.endpoint(JournalService, poison=FAST_POISON)
    runtime = await stack.runtime([(endpoint, JournalService)])
    context = runtime.client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("faulty")
    with pytest.raises(OperationFailed):
        await journal.fail("on purpose")
    with pytest.raises(SessionNotOpen, match="in the Faulted state: ValueError: on purpose"):
        await context.close()
    with pytest.raises(SessionNotOpen, match="has been Aborted"):
        await journal.write(1)
    await context.close()  # aborted: nothing left to close
    assert (await session_of(stack, context.id)).state is SessionState.FAULTED


async def test_an_error_in_the_block_is_never_masked_by_the_close(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService, poison=FAST_POISON)
    runtime = await stack.runtime([(endpoint, JournalService)])
    context = runtime.client.session(Journal, endpoint=endpoint.name)
    with pytest.raises(OperationFailed, match="on purpose") as raised:
        async with context as journal:
            await journal.begin("faulty")
            await journal.fail("on purpose")
    assert raised.value.__notes__ == [
        f"closing the session then failed: The session {context.id!r} cannot be used for "
        "communication because it is in the Faulted state: ValueError: on purpose"
    ]


async def test_calls_after_abort_say_the_session_was_aborted(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    context = Client(stack.store, Endpoints([endpoint])).session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("aborted")
    await context.abort()
    with pytest.raises(SessionNotOpen, match="cannot be used for communication because it has"):
        await journal.write(1)
    await context.abort()  # once is enough
    assert (await session_of(stack, context.id)).state is SessionState.TERMINATED


async def test_closing_a_session_an_operator_terminated_says_so(stack: Stack) -> None:
    endpoint = stack.endpoint(JournalService)
    client = Client(stack.store, Endpoints([endpoint]))
    context = client.session(Journal, endpoint=endpoint.name)
    journal = await context.open()
    await journal.begin("terminated")
    await client.transact(lambda tx: terminate_session(tx.uow, context.id, "by hand", utcnow()))
    with pytest.raises(SessionNotOpen, match="is terminated"):
        await context.close()
    await context.abort()  # it ended already: nothing to abort
