"""Acknowledgement range bookkeeping: which message numbers of a sequence have been seen."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from durable_sessions.wsrm.messages import AckRange


def _normalize(ranges: Iterable[AckRange]) -> tuple[AckRange, ...]:
    merged: list[AckRange] = []
    for current in sorted(ranges, key=lambda r: r.lower):
        if merged and current.lower <= merged[-1].upper + 1:
            if current.upper > merged[-1].upper:
                merged[-1] = AckRange(merged[-1].lower, current.upper)
        else:
            merged.append(current)
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class RangeSet:
    """A set of message numbers kept as sorted, disjoint, non-adjacent ranges.

    It is a value: every operation returns a new set. Build one from any ranges with
    :meth:`of`; the constructor expects them already normalized.
    """

    ranges: tuple[AckRange, ...] = ()

    @classmethod
    def of(cls, ranges: Iterable[AckRange]) -> RangeSet:
        """The set covering ``ranges``, which may overlap, touch or come in any order."""
        return cls(_normalize(ranges))

    def _index(self, number: int) -> int:
        # Index of the last range starting at or below ``number`` (-1 if none).
        return bisect_right(self.ranges, number, key=lambda r: r.lower) - 1

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        i = self._index(number)
        return i >= 0 and number <= self.ranges[i].upper

    def __len__(self) -> int:
        return sum(r.upper - r.lower + 1 for r in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def add(self, number: int) -> RangeSet:
        """This set with ``number`` added."""
        if number in self:
            return self
        i = self._index(number)
        lower = upper = number
        start, stop = i + 1, i + 1
        if i >= 0 and self.ranges[i].upper == number - 1:
            lower, start = self.ranges[i].lower, i
        if stop < len(self.ranges) and self.ranges[stop].lower == number + 1:
            upper, stop = self.ranges[stop].upper, stop + 1
        return RangeSet((*self.ranges[:start], AckRange(lower, upper), *self.ranges[stop:]))

    def union(self, other: RangeSet) -> RangeSet:
        """Every number in this set or in ``other``."""
        return RangeSet.of((*self.ranges, *other.ranges))

    def highest(self) -> int:
        """The highest number in the set, or 0 when it is empty."""
        return self.ranges[-1].upper if self.ranges else 0

    def highest_contiguous(self) -> int:
        """The largest n such that 1..n are all in the set (0 when 1 is missing)."""
        first = self.ranges[0] if self.ranges else None
        return first.upper if first is not None and first.lower == 1 else 0

    def covers(self, lower: int, upper: int) -> bool:
        """Whether every number from ``lower`` to ``upper`` is in the set (true when empty)."""
        if lower > upper:
            return True
        i = self._index(lower)
        return i >= 0 and self.ranges[i].upper >= upper
