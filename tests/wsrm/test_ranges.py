"""RangeSet behaves like the set of numbers it stands for, kept in normal form."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from durable_sessions.wsrm.messages import AckRange
from durable_sessions.wsrm.ranges import RangeSet


def _numbers(ranges: RangeSet) -> set[int]:
    return {n for r in ranges.ranges for n in range(r.lower, r.upper + 1)}


def _is_normal(ranges: RangeSet) -> bool:
    pairs = ranges.ranges
    return all(a.upper + 1 < b.lower for a, b in itertools.pairwise(pairs))


small = st.integers(1, 60)
ack_ranges = st.tuples(small, small).map(lambda p: AckRange(min(p), max(p)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(small, st.lists(ack_ranges, max_size=4)), max_size=30), small, small)
def test_range_set_matches_a_set_model(
    operations: list[int | list[AckRange]], probe: int, other: int
) -> None:
    ranges, model = RangeSet(), set[int]()
    for operation in operations:
        if isinstance(operation, int):
            ranges, model = ranges.add(operation), model | {operation}
        else:
            added = RangeSet.of(operation)
            ranges, model = ranges.union(added), model | _numbers(added)
        assert _is_normal(ranges)
    assert _numbers(ranges) == model
    assert len(ranges) == len(model)
    assert bool(ranges) == bool(model)
    assert (probe in ranges) == (probe in model)
    assert ranges.highest() == max(model, default=0)
    contiguous = 0
    while contiguous + 1 in model:
        contiguous += 1
    assert ranges.highest_contiguous() == contiguous
    low, high = min(probe, other), max(probe, other)
    assert ranges.covers(low, high) == all(n in model for n in range(low, high + 1))


def test_range_set_examples() -> None:
    ranges = RangeSet().add(3).add(1).add(2).add(7).add(5)
    assert ranges.ranges == (AckRange(1, 3), AckRange(5, 5), AckRange(7, 7))
    assert ranges.add(6).ranges == (AckRange(1, 3), AckRange(5, 7))
    assert ranges.add(3) is ranges
    assert ranges.highest_contiguous() == 3
    assert RangeSet.of([AckRange(4, 9), AckRange(1, 2), AckRange(3, 3)]).ranges == (AckRange(1, 9),)
    assert "3" not in ranges
    assert ranges.covers(5, 4)
    assert not RangeSet().covers(1, 1)
