"""The pure parts of the benchmark harness: statistics, the correctness check, the report."""

from __future__ import annotations

import pytest

from benchmarks.correctness import CorrectnessError, Tally, problems, tally_of, verify
from benchmarks.rendering import markdown
from benchmarks.results import THROUGHPUT, Result, summarise
from benchmarks.stats import median, percentile, ratio


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 95) == 7


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_median_of_even_and_odd_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2
    assert median([4.0, 1.0, 3.0, 2.0]) == pytest.approx(2.5)


def test_ratio_is_none_without_a_baseline() -> None:
    assert ratio(3.0, 4.0) == pytest.approx(0.75)
    assert ratio(3.0, None) is None
    assert ratio(None, 4.0) is None
    assert ratio(3.0, 0.0) is None


def test_every_message_once_in_order_passes() -> None:
    seen = {"a": tally_of([1, 2, 3]), "b": tally_of([1])}
    assert problems({"a": 3, "b": 1}, seen) == []
    verify("ok", {"a": 3, "b": 1}, seen)


@pytest.mark.parametrize(
    ("numbers", "complaint"),
    [
        ([1, 2], "1 of 3 messages lost"),
        ([1, 3], "lost"),
        ([1, 2, 2, 3], "1 more applied than sent"),
        ([1, 3, 2], "out of order"),
        ([2, 1, 3], "out of order"),
        ([1, 2, 3, 3], "more applied than sent"),
    ],
)
def test_loss_duplicates_and_reordering_are_refused(numbers: list[int], complaint: str) -> None:
    seen = {"a": tally_of(numbers)}
    assert any(complaint in p for p in problems({"a": 3}, seen))
    with pytest.raises(CorrectnessError, match="session a"):
        verify("B9", {"a": 3}, seen)


def test_a_session_never_seen_is_all_lost_and_a_stray_one_is_named() -> None:
    assert problems({"a": 2}, {}) == ["session a: 2 of 2 messages lost"]
    assert problems({}, {"z": Tally(1, 1, 0)}) == ["session z: never sent to, yet seen"]


def test_the_error_shows_the_first_problems_and_counts_the_rest() -> None:
    sent = {f"s{i}": 1 for i in range(8)}
    with pytest.raises(CorrectnessError, match=r"and 3 more"):
        verify("B3", sent, {})


def _runs() -> list[list[Result]]:
    return [
        [
            Result("B1", {THROUGHPUT: b1}),
            Result("B2", {THROUGHPUT: b2}, "postgresql"),
            Result("B3", {THROUGHPUT: b3}, "postgresql", 256),
            Result("B4", {"p99_ms": p99}, "postgresql", 256),
        ]
        for b1, b2, b3, p99 in [
            (1000.0, 400.0, 800.0, 30.0),
            (2000.0, 600.0, 700.0, 20.0),
            (1500.0, 500.0, 900.0, 10.0),
        ]
    ]


def test_summary_takes_medians_and_ranges_over_runs() -> None:
    report = summarise(_runs())
    assert report.get(("B1", "", 0), THROUGHPUT) == 1500
    b3 = next(row for row in report.rows if row.key[0] == "B3")
    assert (b3.median, b3.low, b3.high, b3.runs) == (800, 700, 900, 3)
    assert report.throughput_ratios(b3) == (pytest.approx(800 / 1500), pytest.approx(1.6))


def test_targets_say_which_are_met_and_missing_ones_are_not() -> None:
    targets = {t.goal: t for t in summarise(_runs()).targets()}
    share = targets["B3 PostgreSQL 256 sessions >= 0.7 x B1"]
    assert share.value == pytest.approx(800 / 1500)
    assert not share.met
    assert targets["B4 p99 at half of B3's maximum <= 25 ms"].met
    assert targets["B5 recovery after kill -9 <= 2 s"].value is None
    assert not targets["B5 recovery after kill -9 <= 2 s"].met


def test_markdown_table_has_a_row_per_metric_with_ratios() -> None:
    text = markdown(summarise(_runs()))
    lines = text.splitlines()
    assert lines[0].startswith("| Scenario | Database | Sessions |")
    b3 = next(line for line in lines if line.startswith("| B3"))
    assert "| postgresql | 256 | msgs/s | 800 | 700-900 | 0.53 | 1.60 |" in b3
    b1 = next(line for line in lines if line.startswith("| B1"))
    assert b1.endswith("| - | - |")
    assert "| B4 p99 at half of B3's maximum <= 25 ms | 20.0 | yes |" in lines
