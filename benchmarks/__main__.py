"""``python -m benchmarks [--quick] [--runs N] [--out DIR]``: measure, check, then report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import rendering
from benchmarks.correctness import CorrectnessError
from benchmarks.infrastructure import REPO, say
from benchmarks.plan import FULL, QUICK, Plan, run_once
from benchmarks.results import Result, summarise


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, one run (< 60 s)")
    parser.add_argument("--runs", type=int, help="runs to take the medians of (full: 3)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results", help="output folder"
    )
    return parser.parse_args()


async def _measure(plan: Plan, logs: Path) -> list[list[Result]]:
    runs = []
    for index in range(plan.runs):
        say(f"run {index + 1} of {plan.runs}")
        runs.append(await run_once(plan, index, logs))
    return runs


def main() -> int:
    """Run the plan; write and print the report, or exit 1 if any scenario failed its check."""
    arguments = _arguments()
    plan = QUICK if arguments.quick else FULL
    if arguments.runs is not None:
        if arguments.runs < 1:
            raise SystemExit("--runs must be at least 1")
        plan = dataclasses.replace(plan, runs=arguments.runs)
    logs = arguments.out / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"cannot write the results to {arguments.out}: {error.strerror}") from None
    started = time.monotonic()
    about = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": arguments.quick,
        "runs": plan.runs,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    try:
        runs = asyncio.run(_measure(plan, logs))
    except CorrectnessError as error:
        say(f"refusing to report: a scenario failed its correctness check: {error}")
        return 1
    except TimeoutError as error:
        say(f"refusing to report: a scenario did not finish: {error}")
        return 1
    about["wall_time_s"] = round(time.monotonic() - started, 1)
    report = summarise(runs)
    written = rendering.write(arguments.out, runs, report, about)
    print(rendering.markdown(report))
    say(f"wrote {', '.join(str(p) for p in written)} in {about['wall_time_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
