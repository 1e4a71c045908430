"""The report's forms: a Markdown table, a JSON document and a chart of throughput."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.results import THROUGHPUT, Database, Report, Result

SCENARIOS = {
    "B1": "raw aio-pika, confirms + manual ack",
    "B2": "hand-written consumer, 1 txn per message",
    "B3": "durable-sessions queued session, end to end",
    "B4": "latency at 50% of B3's maximum",
    "B5": "recovery after kill -9 of a worker",
    "B6": "control plane over many sessions",
}

METRICS = {
    THROUGHPUT: "msgs/s",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
    "offered_per_s": "offered msgs/s",
    "achieved_per_s": "achieved msgs/s",
    "recovery_s": "s to next apply",
    "sessions_held": "sessions in flight",
    "list_p50_ms": "list p50 ms",
    "list_p95_ms": "list p95 ms",
    "inspect_p50_ms": "inspect p50 ms",
    "inspect_p95_ms": "inspect p95 ms",
    "sessions_stored": "sessions stored",
}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(report: Report) -> str:
    """The medians as a Markdown table, with B3's ratios to the baselines, then the targets."""
    lines = [
        "| Scenario | Database | Sessions | Metric | Median | Range | B3/B1 | B3/B2 |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in report.rows:
        scenario, database, sessions = row.key
        to_b1, to_b2 = report.throughput_ratios(row)
        lines.append(
            f"| {scenario} {SCENARIOS.get(scenario, '')} | {database or '-'} "
            f"| {sessions or '-'} | {METRICS.get(row.metric, row.metric)} "
            f"| {_number(row.median)} | {_number(row.low)}-{_number(row.high)} "
            f"| {_number(to_b1)} | {_number(to_b2)} |"
        )
    lines += ["", "| Target | Median | Met |", "|---|---:|---|"]
    lines += [
        f"| {t.goal} | {_number(t.value)} | {'yes' if t.met else 'no'} |" for t in report.targets()
    ]
    return "\n".join(lines) + "\n"


def document(
    runs: Sequence[Sequence[Result]], report: Report, about: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything measured, as JSON-ready data: the setup, every run, the medians, the targets."""
    return {
        "about": dict(about),
        "runs": [[asdict(result) for result in run] for run in runs],
        "medians": [asdict(row) for row in report.rows],
        "targets": [asdict(target) for target in report.targets()],
    }


def chart(report: Report, path: Path) -> None:
    """Plot B3's throughput against sessions per database, with the baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5))
    colours = {Database.POSTGRESQL: "tab:blue", Database.SQLITE: "tab:orange"}
    counts: set[int] = set()
    for database, colour in colours.items():
        points = sorted(
            (row.key[2], row.median)
            for row in report.rows
            if row.key[:2] == ("B3", database) and row.metric == THROUGHPUT
        )
        counts.update(sessions for sessions, _ in points)
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", color=colour, label=f"B3 {database}")
        b2 = report.get(("B2", database, 0), THROUGHPUT)
        if b2 is not None:
            axes.axhline(b2, color=colour, linestyle=":", label=f"B2 hand-written {database}")
    b1 = report.get(("B1", "", 0), THROUGHPUT)
    if b1 is not None:
        axes.axhline(b1, color="black", linestyle="--", label="B1 raw broker")
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(counts), [str(c) for c in sorted(counts)])
    axes.set_xlabel("concurrent sessions")
    axes.set_ylabel("messages per second (median)")
    axes.set_title("Queued-session throughput, send to applied")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def write(
    out: Path, runs: Sequence[Sequence[Result]], report: Report, about: Mapping[str, Any]
) -> list[Path]:
    """Write ``results.json``, ``results.md`` and ``throughput.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data, table, picture = out / "results.json", out / "results.md", out / "throughput.png"
    data.write_text(json.dumps(document(runs, report, about), indent=2) + "\n")
    table.write_text(markdown(report))
    chart(report, picture)
    return [data, table, picture]
