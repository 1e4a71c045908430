"""Results of the scenarios, their medians over runs, and the checks against the targets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from benchmarks.stats import median, ratio


class Database(StrEnum):
    """The databases the scenarios run on."""

    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"


Key = tuple[str, str, int]
"""(scenario, database, sessions); database "" and sessions 0 when they do not apply."""


@dataclass(frozen=True, slots=True)
class Result:
    """The metrics one scenario measured in one run."""

    scenario: str
    metrics: Mapping[str, float]
    database: str = ""
    sessions: int = 0

    @property
    def key(self) -> Key:
        """What identifies the scenario across runs."""
        return (self.scenario, self.database, self.sessions)


@dataclass(frozen=True, slots=True)
class Summary:
    """One metric of one scenario over all runs."""

    key: Key
    metric: str
    median: float
    low: float
    high: float
    runs: int


@dataclass(frozen=True, slots=True)
class Target:
    """A goal of the issue, and whether the median met it."""

    goal: str
    value: float | None
    met: bool


@dataclass(frozen=True, slots=True)
class Report:
    """The medians of every scenario's metrics, in the order they were first measured."""

    rows: list[Summary] = field(default_factory=list)

    def get(self, key: Key, metric: str) -> float | None:
        """The median of ``metric`` for ``key``, or None when it was not measured."""
        for row in self.rows:
            if row.key == key and row.metric == metric:
                return row.median
        return None

    def throughput_ratios(self, row: Summary) -> tuple[float | None, float | None]:
        """A B3 row's throughput divided by B1's and by B2's on the same database."""
        scenario, database, _ = row.key
        if scenario != "B3" or row.metric != THROUGHPUT:
            return None, None
        return (
            ratio(row.median, self.get(("B1", "", 0), THROUGHPUT)),
            ratio(row.median, self.get(("B2", database, 0), THROUGHPUT)),
        )

    def targets(self) -> list[Target]:
        """The issue's targets, checked against the medians."""
        b3 = self.get(("B3", Database.POSTGRESQL, 256), THROUGHPUT)
        b1 = self.get(("B1", "", 0), THROUGHPUT)
        share = ratio(b3, b1)
        p99 = self.get(("B4", Database.POSTGRESQL, 256), "p99_ms")
        recovery = self.get(("B5", Database.POSTGRESQL, 0), "recovery_s")
        listing = self.get(("B6", Database.POSTGRESQL, 0), "list_p95_ms")
        inspecting = self.get(("B6", Database.POSTGRESQL, 0), "inspect_p95_ms")
        return [
            Target("B3 PostgreSQL 256 sessions >= 0.7 x B1", share, _at_least(share, 0.7)),
            Target("B4 p99 at half of B3's maximum <= 25 ms", p99, _at_most(p99, 25.0)),
            Target("B5 recovery after kill -9 <= 2 s", recovery, _at_most(recovery, 2.0)),
            Target("B6 list first page p95 <= 50 ms", listing, _at_most(listing, 50.0)),
            Target("B6 inspect one session p95 <= 50 ms", inspecting, _at_most(inspecting, 50.0)),
        ]


THROUGHPUT = "msgs_per_s"


def summarise(runs: Sequence[Sequence[Result]]) -> Report:
    """Median, lowest and highest value of every metric over the runs."""
    values: dict[tuple[Key, str], list[float]] = defaultdict(list)
    for run in runs:
        for result in run:
            for metric, value in result.metrics.items():
                values[(result.key, metric)].append(value)
    return Report(
        [
            Summary(key, metric, median(seen), min(seen), max(seen), len(seen))
            for (key, metric), seen in values.items()
        ]
    )


def _at_least(value: float | None, goal: float) -> bool:
    return value is not None and value >= goal


def _at_most(value: float | None, goal: float) -> bool:
    return value is not None and value <= goal
