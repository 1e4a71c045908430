"""The Python client: sessions and datagrams through typed proxies of a contract.

::

    async with client.session(Calculator) as calc:
        await calc.clear()  # durable once it returns
        await calc.add_to(5)
        print(await calc.equals())  # waits until applied, returns 5.0

Every call is one durable send; a two-way call then waits for its result (or raises
:class:`~durable_sessions.errors.OperationFailed` with the service's error). The client checks
WCF's rules before sending anything: the first call must be initiating, nothing may follow a
terminating call, and nothing may be sent after the session closed or was aborted
(:mod:`~durable_sessions.engine.handle`). Leaving the block closes the session gracefully, and
never masks an exception the block raised; ``abort()`` terminates it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from durable_sessions.engine.control import close_session, terminate_session
from durable_sessions.engine.handle import SessionHandle
from durable_sessions.engine.outbox import OutboxRelay, OutboxTransaction, publish_after_commit
from durable_sessions.engine.sending import SendRequest, Sent, open_session, send_many
from durable_sessions.errors import (
    ConcurrencyConflict,
    IllegalTransition,
    MessageNotFound,
    OperationFailed,
    SessionNotOpen,
    UniquenessViolation,
)
from durable_sessions.model.contracts import ContractSpec, OperationSpec, contract_of
from durable_sessions.model.endpoints import Endpoint, Endpoints
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import MessageRecord, MessageStatus, SessionRecord, utcnow
from durable_sessions.store.base import SessionLock, Store, UnitOfWork

C = TypeVar("C")
T = TypeVar("T")

DEFAULT_SEND_TIMEOUT_S = 60.0
"""How long a two-way call waits for its result (WCF's SendTimeout)."""


class Client:
    """Opens sessions and sends messages through the store (and a relay, when there is one)."""

    def __init__(
        self,
        store: Store,
        endpoints: Endpoints,
        relay: OutboxRelay | None = None,
        *,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        inactivity_timeout_s: float = 600.0,
        ttl_s: float | None = 86400.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.relay = relay
        self.send_timeout_s = send_timeout_s
        self.inactivity_timeout_s = inactivity_timeout_s
        self.ttl_s = ttl_s
        self.clock = clock
        self._commits = _GroupCommit(self)

    def session(
        self,
        contract: type[C],
        *,
        endpoint: str | None = None,
        labels: Mapping[str, str] | None = None,
        inactivity_timeout_s: float | None = None,
        ttl_s: float | None = None,
    ) -> SessionContext[C]:
        """A session of ``contract``: ``async with`` it to get a proxy of the contract."""
        spec = contract_of(contract)
        return SessionContext(
            self,
            self.endpoints.for_contract(spec.name, endpoint),
            labels=labels,
            inactivity_timeout_s=inactivity_timeout_s or self.inactivity_timeout_s,
            ttl_s=ttl_s if ttl_s is not None else self.ttl_s,
        )

    def datagrams(self, contract: type[C], *, endpoint: str | None = None) -> C:
        """A proxy of ``contract`` whose calls are datagrams (no session)."""
        spec = contract_of(contract)
        target = self.endpoints.for_contract(spec.name, endpoint)

        async def call(op: OperationSpec, args: dict[str, Any]) -> Any:
            sent = await self.send(SendRequest(target, None, op.name, args))
            return await self.outcome(op, sent)

        return cast(C, ContractProxy(spec, call))

    async def send(self, request: SendRequest) -> Sent:
        """Send one message durably; concurrent sends share one transaction (group commit)."""
        return await self._commits.send(request)

    async def transact(self, work: Callable[[OutboxTransaction], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction (again after a lost race), then publish what it sent."""
        for attempt in range(3):
            try:
                async with publish_after_commit(self.store, self.relay, self.clock()) as tx:
                    result = await work(tx)
                break
            except (ConcurrencyConflict, UniquenessViolation):
                if attempt == 2:
                    raise
        return result

    async def outcome(self, op: OperationSpec, sent: Sent) -> Any:
        """None for a one-way call; for a two-way call, wait and return its result."""
        if op.one_way:
            return None
        message = await self.wait(sent.message.message_id)
        if message.status is MessageStatus.APPLIED:
            return op.load_result(message.result)
        raise OperationFailed(op.name, message.error or message.status.value)

    async def wait(self, message_id: str, *, timeout_s: float | None = None) -> MessageRecord:
        """Wait until a message is applied, failed or dead; TimeoutError after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.send_timeout_s)
        delay = 0.002
        while True:
            async with self.store.snapshot() as uow:
                message = await uow.messages.get(message_id)
            if message is None:
                raise MessageNotFound(f"no message with id {message_id!r}")
            if message.status.is_final:
                return message
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"message {message_id!r} was not applied within "
                    f"{timeout_s or self.send_timeout_s:g} s (it is {message.status})"
                )
            await asyncio.sleep(delay)
            delay = min(0.05, delay * 1.5)


class SessionContext(Generic[C]):
    """One session seen from the client: ``async with`` gives the contract's proxy.

    Leaving the block closes the session; if the block raised, its exception goes on and
    a failed close is only noted on it (never masks it). Closing a session that faulted
    aborts the client's handle and raises :class:`~durable_sessions.errors.SessionFaulted`;
    the session stays faulted for an operator to resume, skip or terminate.
    """

    def __init__(
        self,
        client: Client,
        endpoint: Endpoint,
        *,
        labels: Mapping[str, str] | None,
        inactivity_timeout_s: float,
        ttl_s: float | None,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.record: SessionRecord | None = None
        self.handle = SessionHandle(endpoint.contract)
        self._labels = labels
        self._inactivity_timeout_s = inactivity_timeout_s
        self._ttl_s = ttl_s

    @property
    def id(self) -> str:
        """The session id (once open)."""
        if self.record is None:
            raise SessionNotOpen("-", "not opened yet")
        return self.record.id

    async def open(self) -> C:
        """Create the session and return the contract's proxy."""
        now = self.client.clock()
        self.record = await self.client.transact(
            lambda tx: open_session(
                tx.uow,
                self.endpoint,
                now,
                inactivity_timeout_s=self._inactivity_timeout_s,
                ttl_s=self._ttl_s,
                labels=self._labels,
            )
        )
        self.handle.opened(self.record.id)
        return cast(C, ContractProxy(self.endpoint.contract, self._call))

    async def close(self) -> None:
        """Close gracefully: what was sent is applied, nothing more may be sent.

        Raises :class:`~durable_sessions.errors.SessionFaulted` if the session faulted, and
        :class:`~durable_sessions.errors.SessionNotOpen` if it was terminated or expired.
        """
        if not self.handle.closing():
            return
        if self.handle.terminated_by is None:  # else the terminating call closes it
            now = self.client.clock()
            sid = self.id
            session = await self.client.transact(lambda tx: _close(tx.uow, sid, now))
            if session.state is SessionState.FAULTED:
                self.handle.faulted(session.fault_reason or "faulted")
                self.handle.closing()  # aborts the handle and raises SessionFaulted
            if session.state.is_final and session.state is not SessionState.CLOSED:
                self.handle.closed()
                raise SessionNotOpen(sid, session.state.value)
        self.handle.closed()

    async def abort(self, reason: str = "aborted by the client") -> None:
        """Terminate the session: messages not applied yet become dead letters.

        Later calls raise :class:`~durable_sessions.errors.SessionAborted`. A session that has
        ended already is left as it is.
        """
        if not self.handle.aborting():
            return
        now = self.client.clock()
        sid = self.id
        with contextlib.suppress(IllegalTransition):  # it ended on its own: nothing to abort
            await self.client.transact(lambda tx: terminate_session(tx.uow, sid, reason, now))

    async def __aenter__(self) -> C:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await close_after(self.close, exc)

    async def _call(self, op: OperationSpec, args: dict[str, Any]) -> Any:
        self.handle.check(op)
        sent = await self.client.send(SendRequest(self.endpoint, self.id, op.name, args))
        self.handle.called(op)
        return await self.client.outcome(op, sent)


async def _close(uow: UnitOfWork, session_id: str, now: datetime) -> SessionRecord:
    """Close the session, unless it has faulted or ended another way (returned as it is)."""
    session = await uow.sessions.get(session_id, lock=SessionLock.BOTH)
    if session is not None and session.state in _NOT_CLOSABLE:
        return session
    return await close_session(uow, session_id, now)


_NOT_CLOSABLE = frozenset({SessionState.FAULTED, SessionState.TERMINATED, SessionState.EXPIRED})


async def close_after(close: Callable[[], Awaitable[None]], error: BaseException | None) -> None:
    """Close at the end of an ``async with`` block that raised ``error`` (or None).

    The block's own exception is never masked: if the close fails too, the failure is added
    to it as a note and the block's exception goes on.
    """
    if error is None:
        await close()
        return
    try:
        await close()
    except Exception as failed:
        error.add_note(f"closing the session then failed: {failed}")


class _GroupCommit:
    """Sends waiting at the same time share one transaction: one commit for all of them.

    While a transaction runs, new sends queue up and go together in the next one, so there is
    no added wait when the client is idle and fewer commits when it is busy. Each caller gets
    its own outcome; if a batch meets a store error, its sends are tried one by one so one bad
    send cannot fail the others.
    """

    def __init__(self, client: Client, max_batch: int = 256) -> None:
        self.client = client
        self.max_batch = max_batch
        self._queue: list[tuple[SendRequest, asyncio.Future[Sent]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def send(self, request: SendRequest) -> Sent:
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: len(batch)]
            try:
                await self._commit(batch)
            except BaseException as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(error, Exception):
                    raise

    async def _commit(
        self, batch: list[tuple[SendRequest, asyncio.Future[Sent]]], tries: int = 3
    ) -> None:
        client = self.client
        now = client.clock()
        try:
            async with publish_after_commit(client.store, client.relay, now) as tx:
                results = await send_many(tx, [request for request, _ in batch], now)
        except (ConcurrencyConflict, UniquenessViolation):
            if len(batch) > 1:
                for item in batch:
                    await self._commit([item])
                return
            if tries <= 1:
                raise
            await self._commit(batch, tries - 1)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Sent):
                future.set_result(result)
            else:
                future.set_exception(result)


class ContractProxy:
    """Turns attribute calls into operation calls of a contract (``call(op, args)``)."""

    def __init__(
        self, contract: ContractSpec, call: Callable[[OperationSpec, dict[str, Any]], Any]
    ) -> None:
        self._contract = contract
        self._call = call

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        op = self._contract.operation(name)

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            return await self._call(op, op.bind(*args, **kwargs))

        invoke.__name__ = name
        return invoke
