"""Waking stored destination sequences whose time has come, safely in any number of processes.

The destination engine has work that no incoming envelope triggers: a sequence whose source
fell silent for ``inactivity_timeout`` ends (normally if every message was delivered, else
with a SequenceTerminated fault, which terminates its session), and an acknowledgement held for
``acknowledgement_interval`` falls due. Every stored sequence keeps that moment in ``wake_at``;
each endpoint's own settings decide. What a wake-up sends (the due acknowledgement, the fault)
goes, once its transaction has committed, to the ``send`` it was given (the AMQP binding's
:func:`~durable_sessions.reliable.amqp.publish_envelope`); if it is lost, the source asks again.

:meth:`DestinationWakeups.sweep` finds due sequences in a read-only snapshot, then wakes each in
a transaction of its own that locks the sequence row and checks again that it is due, so
concurrent sweepers (and the host receiving on the same sequence) never wake it twice.
Over HTTP (anonymous addressing) nothing can be sent to the source unasked: the host answers
every envelope with the acknowledgement at once, and the fault of an inactive sequence reaches
its source as the answer to whatever it sends next.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from durable_sessions.model.records import SequenceRole
from durable_sessions.reliable.host import end_offered, end_session
from durable_sessions.reliable.sequences import saved, seconds
from durable_sessions.store.base import Store
from durable_sessions.wsrm import snapshot
from durable_sessions.wsrm.actions import Faulted, Send, Terminated
from durable_sessions.wsrm.destination import ReliableDestination
from durable_sessions.wsrm.messages import WSA_ANONYMOUS, Envelope, RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings

log = logging.getLogger(__name__)

WAKE_LIMIT = 200
"""The most sequences one sweep wakes."""


class DestinationWakeups:
    """Wakes the due destination sequences of ``endpoints``; see the module docstring.

    ``endpoints`` maps each endpoint to the settings its hosts use (its inactivity timeout
    and acknowledgement interval decide). ``send(envelope, version)`` sends what a wake-up
    sends; without it nothing is (over HTTP it goes on the answer to the next request).
    """

    def __init__(
        self,
        store: Store,
        endpoints: Mapping[str, ReliableSessionSettings],
        send: Callable[[Envelope, RMVersion], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.send = send

    async def sweep(self, now: datetime) -> int:
        """Wake every sequence due at ``now``; how many were woken."""
        async with self.store.snapshot() as uow:
            due = await uow.sequences.due(
                SequenceRole.DESTINATION, now, WAKE_LIMIT, endpoints=list(self.endpoints)
            )
        woken = 0
        for record in due:
            woken += await self.wake(record.identifier, now)
        return woken

    async def wake(self, identifier: str, now: datetime) -> bool:
        """Wake one sequence if it is still due at ``now``; whether it was."""
        async with self.store.transaction() as uow:
            record = await uow.sequences.get(identifier, lock=True)
            if (
                record is None
                or record.session_id is None
                or record.ended
                or record.wake_at is None
                or record.wake_at > now
                or record.endpoint not in self.endpoints
            ):
                return False
            settings = self.endpoints[record.endpoint]
            engine = ReliableDestination(dataclasses.replace(settings, version=record.rm_version))
            state, actions = engine.wakeup(snapshot.load_destination(record.state), seconds(now))
            for action in actions:
                if isinstance(action, Terminated | Faulted):
                    await end_session(uow, record.session_id, action, now)
            record = await uow.sequences.update(saved(record, engine, state, now))
            if record.ended:
                await end_offered(uow, state, now)
        for action in actions:
            if isinstance(action, Send):
                await self._send(action.envelope, engine.version)
            elif isinstance(action, Faulted):
                log.info("sequence %s faulted: %s", identifier, action.fault.reason)
            elif isinstance(action, Terminated):
                log.info("sequence %s ended after its source fell silent", identifier)
        return True

    async def _send(self, envelope: Envelope, version: RMVersion) -> None:
        # To an anonymous AcksTo it can only go on the answer to the next request.
        if self.send is not None and envelope.to not in (None, WSA_ANONYMOUS):
            await self.send(envelope, version)
