"""One message's attempts: a cycle of immediate retries, then a verdict.

A cycle calls the handler up to ``receive_retry_count + 1`` times, each time on a fresh
instance (so a failed attempt leaves no trace in the instance state), and stops at the first
success. After a failed cycle the message waits ``retry_cycle_delay_s`` for the next cycle; after
``max_retry_cycles`` further cycles its retries are exhausted and the endpoint's
``receive_error_handling`` decides. A message the broker delivered too often without any cycle
completing (its handler kills the worker) counts as a failed cycle without being called again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from durable_sessions.flow import EndSession, RejectMessage, RetryLater
from durable_sessions.model.contracts import OperationSpec
from durable_sessions.model.endpoints import PoisonPolicy
from durable_sessions.model.records import MessageRecord, MessageStatus
from durable_sessions.model.services import ServiceSpec

MAX_ERROR_TEXT = 2000


class Verdict(StrEnum):
    """How an attempt cycle ended."""

    APPLIED = "applied"
    ENDED = "ended"
    """Applied, and the handler asked to end the session."""
    WAITING = "waiting"
    """Not applied; a retry is scheduled (``next_attempt_at``)."""
    REJECTED = "rejected"
    """The handler rejected the message."""
    EXHAUSTED = "exhausted"
    """Every retry failed."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of a cycle: the verdict, the message as updated, the instance after success."""

    verdict: Verdict
    message: MessageRecord
    instance: Any = None


def describe_error(error: BaseException) -> str:
    """``TypeName: message``, bounded in length."""
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT]


async def run_cycle(
    service: ServiceSpec,
    operation: OperationSpec,
    message: MessageRecord,
    fresh_instance: Callable[[], Any],
    policy: PoisonPolicy,
    now: datetime,
    *,
    redeliveries: int = 0,
    max_redeliveries: int = 10,
) -> Attempt:
    """Run one attempt cycle of ``message`` and return its verdict."""
    attempts, error = message.attempts, message.error
    if redeliveries >= max_redeliveries:
        attempts += policy.attempts_per_cycle
        error = (
            f"delivered {redeliveries + 1} times without completing: its handler may be "
            "crashing the worker process"
        )
    else:
        for _ in range(policy.attempts_per_cycle):
            instance = fresh_instance()
            try:
                result = await service.invoke(instance, operation, message.args)
            except RetryLater as retry:
                return _waiting(message, attempts, error, now, retry.delay_s)
            except RejectMessage as rejected:
                return Attempt(
                    Verdict.REJECTED,
                    dataclasses.replace(message, attempts=attempts + 1, error=rejected.reason),
                )
            except EndSession:
                return _applied(message, attempts, None, now, instance, Verdict.ENDED)
            except Exception as failure:  # the handler's failure is data for the poison policy
                attempts += 1
                error = describe_error(failure)
            else:
                return _applied(message, attempts, result, now, instance, Verdict.APPLIED)
    cycles_done = attempts // policy.attempts_per_cycle
    if cycles_done <= policy.max_retry_cycles:
        return _waiting(message, attempts, error, now, policy.retry_cycle_delay_s)
    return Attempt(Verdict.EXHAUSTED, dataclasses.replace(message, attempts=attempts, error=error))


def _applied(
    message: MessageRecord,
    attempts: int,
    result: Any,
    now: datetime,
    instance: Any,
    verdict: Verdict,
) -> Attempt:
    done = dataclasses.replace(
        message,
        status=MessageStatus.APPLIED,
        attempts=attempts + 1,
        result=result,
        error=None,
        applied_at=now,
        updated_at=now,
        next_attempt_at=None,
    )
    return Attempt(verdict, done, instance)


def _waiting(
    message: MessageRecord, attempts: int, error: str | None, now: datetime, delay_s: float
) -> Attempt:
    waiting = dataclasses.replace(
        message,
        status=MessageStatus.PENDING,
        attempts=attempts,
        error=error,
        updated_at=now,
        next_attempt_at=now + timedelta(seconds=delay_s),
    )
    return Attempt(Verdict.WAITING, waiting)
