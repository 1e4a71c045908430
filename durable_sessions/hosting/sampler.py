"""A small in-process history of the apply rate and latency, for the dashboard's overview.

Prometheus keeps history for those who run one; the dashboard must show the last minutes on
its own. :class:`Sampler` reads the counters every few seconds (every process's, when
``durable-sessions up`` shares them, see :mod:`durable_sessions.hosting.metrics`) and keeps
the differences: messages applied per second and their mean apply latency, per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from durable_sessions.hosting.metrics import Metrics, counters

SAMPLE_EVERY_S = 5.0
KEEP = 72
"""Intervals kept: six minutes at the default pace."""


@dataclass(frozen=True, slots=True)
class Totals:
    """The counters at one moment: messages applied, and the sum and count of latencies."""

    at: float
    applied: float
    latency_sum: float
    latency_count: float


@dataclass(frozen=True, slots=True)
class Interval:
    """What happened between two samples."""

    ended: float
    """When the interval ended, in ``time.time()`` seconds."""
    applied_per_s: float
    mean_latency_s: float | None
    """None when nothing was applied in it."""


def read_totals(metrics: Metrics, at: float) -> Totals:
    """The apply counters summed over endpoints (and processes) now."""
    applied = latency_sum = latency_count = 0.0
    for family in counters(metrics).collect():
        for sample in family.samples:
            if sample.name == "ds_messages_applied_total":
                applied += sample.value
            elif sample.name == "ds_apply_latency_seconds_sum":
                latency_sum += sample.value
            elif sample.name == "ds_apply_latency_seconds_count":
                latency_count += sample.value
    return Totals(at, applied, latency_sum, latency_count)


def interval(before: Totals, after: Totals) -> Interval:
    """The rate and mean latency between two readings (a counter reset reads as zero)."""
    seconds = max(after.at - before.at, 1e-9)
    applied = max(0.0, after.applied - before.applied)
    count = after.latency_count - before.latency_count
    latency = (after.latency_sum - before.latency_sum) / count if count > 0 else None
    return Interval(after.at, applied / seconds, latency)


class Sampler:
    """Samples ``metrics`` every ``every_s`` seconds and keeps the last ``keep`` intervals."""

    def __init__(self, metrics: Metrics, every_s: float = SAMPLE_EVERY_S, keep: int = KEEP):
        self.metrics, self.every_s = metrics, every_s
        self._last: Totals | None = None
        self._intervals: deque[Interval] = deque(maxlen=keep)

    def sample(self, at: float | None = None) -> None:
        """Read the counters once and record the interval since the previous reading."""
        totals = read_totals(self.metrics, time.time() if at is None else at)
        if self._last is not None:
            self._intervals.append(interval(self._last, totals))
        self._last = totals

    def intervals(self) -> list[Interval]:
        """The intervals kept, oldest first."""
        return list(self._intervals)

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self.every_s)
