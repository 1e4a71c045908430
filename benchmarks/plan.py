"""What one invocation measures, and in which order: scenarios interleaved across runs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks import baselines, recovery, scale, sessions
from benchmarks.infrastructure import say
from benchmarks.results import THROUGHPUT, Database, Result

SESSION_COUNTS = (1, 16, 256, 4096)
LATENCY_SESSIONS = 256
LATENCY_LOAD = 0.5
"""B4's offered rate, as a share of B3's measured maximum (PostgreSQL, 256 sessions)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Message counts and durations of every scenario."""

    runs: int
    raw_messages: int
    hand_written_messages: int
    session_messages: Mapping[int, int]
    """Messages sent in B3 per session count (at least one per session)."""
    latency_duration_s: float
    recovery_sessions: int
    recovery_warm_up_s: float
    stored_sessions: int
    api_requests: int


QUICK = Plan(
    runs=1,
    raw_messages=3000,
    hand_written_messages=600,
    session_messages={1: 40, 16: 320, 256: 1024, 4096: 4096},
    latency_duration_s=2.5,
    recovery_sessions=32,
    recovery_warm_up_s=1.0,
    stored_sessions=10_000,
    api_requests=50,
)
FULL = Plan(
    runs=3,
    raw_messages=15_000,
    hand_written_messages=3000,
    session_messages={1: 300, 16: 2400, 256: 8192, 4096: 8192},
    latency_duration_s=10.0,
    recovery_sessions=64,
    recovery_warm_up_s=2.0,
    stored_sessions=100_000,
    api_requests=200,
)

Step = Callable[[], Awaitable[list[Result]]]


def _throughput_steps(plan: Plan, logs: Path) -> list[tuple[str, Step]]:
    async def raw() -> list[Result]:
        result = await baselines.raw_broker(plan.raw_messages)
        say(f"  B1 raw broker:               {result.metrics[THROUGHPUT]:8,.0f} msgs/s")
        return [result]

    def hand_written(database: Database) -> Step:
        async def step() -> list[Result]:
            result = await baselines.hand_written(database, plan.hand_written_messages)
            say(f"  B2 {database:<10} hand-written: {result.metrics[THROUGHPUT]:8,.0f} msgs/s")
            return [result]

        return step

    def queued(database: Database) -> Step:
        async def step() -> list[Result]:
            return await sessions.throughput(
                database, SESSION_COUNTS, plan.session_messages.__getitem__, logs
            )

        return step

    return [
        ("B1", raw),
        *((f"B2 {db}", hand_written(db)) for db in Database),
        *((f"B3 {db}", queued(db)) for db in Database),
    ]


async def run_once(plan: Plan, index: int, logs: Path) -> list[Result]:
    """One run: the throughput scenarios in an order rotated by ``index``, then B4, B5, B6."""
    steps = _throughput_steps(plan, logs)
    turn = index % len(steps)
    results: list[Result] = []
    for name, step in steps[turn:] + steps[:turn]:
        say(f" {name} ...")
        started = time.monotonic()
        results += await step()
        say(f"   ({time.monotonic() - started:.1f} s)")
    b3 = next(r for r in results if r.key == ("B3", Database.POSTGRESQL, LATENCY_SESSIONS)).metrics[
        THROUGHPUT
    ]
    say(" B4 ...")
    results.append(
        await sessions.latency(
            Database.POSTGRESQL, LATENCY_LOAD * b3, LATENCY_SESSIONS, plan.latency_duration_s, logs
        )
    )
    say(" B5 ...")
    results.append(await recovery.recovery(plan.recovery_sessions, plan.recovery_warm_up_s, logs))
    say(" B6 ...")
    results.append(await scale.control_plane(plan.stored_sessions, plan.api_requests, logs))
    return results
