"""Prometheus metrics: what a process sends and applies, and the store's view at scrape time.

Each process keeps its counters in a :class:`Metrics` of its own (no global registry). When
``PROMETHEUS_MULTIPROC_DIR`` is set (``durable-sessions up`` sets it for all its processes) the
control plane's ``/metrics`` adds up the counters of every process on the machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from durable_sessions.engine.batches import BatchOutcome
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.store.base import Store

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The counters and histograms of one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["endpoint"]
        r = self.registry
        self.sent = Counter("ds_messages_sent", "Messages accepted durably.", labels, registry=r)
        self.applied = Counter("ds_messages_applied", "Messages applied.", labels, registry=r)
        self.duplicates = Counter(
            "ds_messages_duplicate", "Deliveries dropped as duplicates.", labels, registry=r
        )
        self.parked = Counter(
            "ds_messages_parked",
            "Early arrivals parked until their gap filled.",
            labels,
            registry=r,
        )
        self.dead = Counter("ds_messages_dead", "Messages made dead letters.", labels, registry=r)
        self.failed = Counter(
            "ds_messages_failed",
            "Messages dropped or faulted by the poison policy.",
            labels,
            registry=r,
        )
        self.apply_latency = Histogram(
            "ds_apply_latency_seconds",
            "Time from a message's send to its apply.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def observe_batch(self, endpoint: str, outcome: BatchOutcome) -> None:
        """Count one committed batch of a dispatcher."""
        self.applied.labels(endpoint).inc(outcome.applied)
        self.duplicates.labels(endpoint).inc(outcome.duplicates)
        self.parked.labels(endpoint).inc(outcome.parked)
        self.dead.labels(endpoint).inc(outcome.dead)
        self.failed.labels(endpoint).inc(outcome.failed)
        histogram = self.apply_latency.labels(endpoint)
        for seconds in outcome.latencies:
            histogram.observe(max(0.0, seconds))


class _StoreView(Collector):
    """Gauges read from the store just before each scrape."""

    def __init__(self, states: dict[SessionState, int], outbox: int, oldest: float) -> None:
        self._states, self._outbox, self._oldest = states, outbox, oldest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sessions = GaugeMetricFamily("ds_sessions", "Sessions by state.", labels=["state"])
        for state, count in self._states.items():
            sessions.add_metric([state.value], count)
        yield sessions
        yield GaugeMetricFamily(
            "ds_outbox_pending", "Outbox entries not published yet.", value=self._outbox
        )
        yield GaugeMetricFamily(
            "ds_outbox_lag_seconds",
            "Age of the oldest unpublished outbox entry.",
            value=self._oldest,
        )


async def render(metrics: Metrics, store: Store, now: datetime) -> bytes:
    """The Prometheus text of this process (or of all, in multiprocess mode) and the store."""
    async with store.snapshot() as uow:
        states = await uow.sessions.count_by_state()
        outbox = await uow.outbox.stats()
    oldest = (
        0.0
        if outbox.oldest_created_at is None
        else (now - outbox.oldest_created_at).total_seconds()
    )
    view = CollectorRegistry(auto_describe=True)
    view.register(_StoreView(states, outbox.count, max(0.0, oldest)))
    return generate_latest(counters(metrics)) + generate_latest(view)


def counters(metrics: Metrics) -> CollectorRegistry:
    """The counters to report: this process's, or every process's in multiprocess mode."""
    if not os.environ.get(MULTIPROCESS_ENV):
        return metrics.registry
    combined = CollectorRegistry()
    MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return combined
