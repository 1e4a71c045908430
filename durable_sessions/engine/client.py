"""The Python client: sessions and datagrams through typed proxies of a contract.

::

    async with client.session(Calculator) as calc:
        await calc.clear()  # durable once it returns
        await calc.add_to(5)
        print(await calc.equals())  # waits until applied, returns 5.0

Every call is one durable send; a two-way call then waits for its result (or raises
:class:`~durable_sessions.errors.OperationFailed` with the service's error). The client checks
WCF's rules before sending anything: the first call must be initiating, nothing may follow a
terminating call, and nothing may be sent after the session closed. Leaving the block closes the
session gracefully; ``abort()`` terminates it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from durable_sessions.engine.control import close_session, terminate_session
from durable_sessions.engine.outbox import OutboxRelay, OutboxTransaction, publish_after_commit
from durable_sessions.engine.sending import (
    SendRequest,
    Sent,
    not_initiating_text,
    open_session,
    send_many,
)
from durable_sessions.errors import (
    ConcurrencyConflict,
    MessageNotFound,
    NotInitiating,
    OperationFailed,
    SessionNotOpen,
    TerminatingOperationCalled,
    UniquenessViolation,
)
from durable_sessions.model.contracts import ContractSpec, OperationSpec, contract_of
from durable_sessions.model.endpoints import Endpoint, Endpoints
from durable_sessions.model.records import MessageRecord, MessageStatus, SessionRecord, utcnow
from durable_sessions.store.base import Store

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
    """One session seen from the client: ``async with`` gives the contract's proxy."""

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
        self._labels = labels
        self._inactivity_timeout_s = inactivity_timeout_s
        self._ttl_s = ttl_s
        self._sent = 0
        self._terminated_by: str | None = None
        self._ended = False

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
        return cast(C, ContractProxy(self.endpoint.contract, self._call))

    async def close(self) -> None:
        """Close gracefully: what was sent is applied, nothing more may be sent."""
        if self._ended or self.record is None:
            return
        self._ended = True
        if self._terminated_by is None:
            now = self.client.clock()
            sid = self.id
            await self.client.transact(lambda tx: close_session(tx.uow, sid, now))

    async def abort(self, reason: str = "aborted by the client") -> None:
        """Terminate the session: messages not applied yet become dead letters."""
        if self._ended or self.record is None:
            return
        self._ended = True
        now = self.client.clock()
        sid = self.id
        await self.client.transact(lambda tx: terminate_session(tx.uow, sid, reason, now))

    async def __aenter__(self) -> C:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, op: OperationSpec, args: dict[str, Any]) -> Any:
        if self._terminated_by is not None:
            raise TerminatingOperationCalled(
                "This channel cannot send any more messages because IsTerminating operation "
                f"{self._terminated_by!r} has already been called."
            )
        if self._ended:
            raise SessionNotOpen(self.id, "closed")
        if self._sent == 0 and not op.initiating:
            raise NotInitiating(not_initiating_text(op, self.endpoint))
        sent = await self.client.send(SendRequest(self.endpoint, self.id, op.name, args))
        self._sent += 1
        if op.terminating:
            self._terminated_by = op.name
            self._ended = True
        return await self.client.outcome(op, sent)


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
