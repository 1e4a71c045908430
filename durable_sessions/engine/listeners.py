"""Faulted datagram listeners: resume one by retrying or skipping the datagram it stopped at.

WCF's ``ReceiveErrorHandling.Fault`` faults the listener at a poison message: nothing more is
taken from its queue until the message is dealt with. Here the fault is a row of the store
(:class:`~durable_sessions.model.records.ListenerFault`) that every worker of the endpoint reads
before it applies datagrams, so all of them stop taking datagrams; the message stays ``failed``.
Resuming removes the row, and the workers take datagrams again within their poll interval.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from durable_sessions.engine.control import ResumeAction
from durable_sessions.engine.outbox import OutboxTransaction, outbox_entry
from durable_sessions.errors import ListenerNotFaulted
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.records import (
    DeadLetterReason,
    ListenerFault,
    MessageRecord,
    MessageStatus,
    dead_letter_of,
)


async def resume_listener(
    tx: OutboxTransaction, endpoint: Endpoint, action: ResumeAction, now: datetime
) -> tuple[ListenerFault, MessageRecord | None]:
    """Resume ``endpoint``'s faulted datagram listener; the fault and the message as left.

    ``retry`` sends the datagram again with fresh retries; ``skip`` makes it a dead letter.
    """
    uow = tx.uow
    fault = await uow.listener_faults.get(endpoint.name, lock=True)
    if fault is None:
        raise ListenerNotFaulted(
            f"the datagram listener of endpoint {endpoint.name!r} is not faulted"
        )
    await uow.listener_faults.remove(endpoint.name)
    stuck = (await uow.messages.get_many([fault.message_id], lock=True)).get(fault.message_id)
    if stuck is None or stuck.status is not MessageStatus.FAILED:
        return fault, stuck
    if action is ResumeAction.RETRY:
        retried = dataclasses.replace(
            stuck, status=MessageStatus.PENDING, attempts=0, next_attempt_at=None, updated_at=now
        )
        await uow.messages.update(retried)
        await tx.publish([outbox_entry(endpoint, retried, now, tx.claim)])
        return fault, retried
    detail = "skipped by an operator"
    skipped = dataclasses.replace(stuck, status=MessageStatus.DEAD, error=detail, updated_at=now)
    await uow.messages.update(skipped)
    await uow.dead_letters.add(dead_letter_of(stuck, DeadLetterReason.SKIPPED, detail, now))
    return fault, skipped
