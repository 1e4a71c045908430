"""The dashboard's sampler turns the apply counters into rates and mean latencies."""

from __future__ import annotations

import pytest

from durable_sessions.engine.batches import BatchOutcome
from durable_sessions.hosting.metrics import Metrics
from durable_sessions.hosting.sampler import Sampler, Totals, interval


def outcome(applied: int, latencies: list[float]) -> BatchOutcome:
    return BatchOutcome(applied=applied, latencies=latencies)


def test_each_interval_has_its_rate_and_mean_latency() -> None:
    metrics = Metrics()
    sampler = Sampler(metrics, keep=2)
    sampler.sample(at=100.0)
    metrics.observe_batch("calculator", outcome(10, [0.01] * 10))
    metrics.observe_batch("orders", outcome(10, [0.03] * 10))
    sampler.sample(at=105.0)
    sampler.sample(at=110.0)
    busy, idle = sampler.intervals()
    assert (busy.ended, busy.applied_per_s) == (105.0, 4.0)
    assert busy.mean_latency_s == pytest.approx(0.02)
    assert (idle.applied_per_s, idle.mean_latency_s) == (0.0, None)
    sampler.sample(at=115.0)
    assert [i.ended for i in sampler.intervals()] == [110.0, 115.0]


def test_a_counter_reset_reads_as_nothing_applied() -> None:
    later = interval(Totals(0.0, 50.0, 1.0, 50.0), Totals(5.0, 10.0, 0.1, 10.0))
    assert later.applied_per_s == 0.0
