"""What each scenario proves: every session's messages arrived once each, all of them, in order.

A consumer folds the numbers it sees for a session (1, 2, 3, ...) into a :class:`Tally`; the
benchmark service keeps its tally as instance state, so the check sees what was applied. A tally
whose every number was ``last + 1`` and whose count equals what was sent proves the session got
exactly 1..n in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class CorrectnessError(Exception):
    """A scenario lost, repeated or reordered messages: its numbers must not be reported."""


@dataclass(frozen=True, slots=True)
class Tally:
    """What a consumer saw of one session's numbered messages."""

    count: int = 0
    last: int = 0
    disorder: int = 0
    """How many numbers were not the one after the previous (repeats, gaps, swaps)."""


def observe(tally: Tally, n: int) -> Tally:
    """The tally after seeing message number ``n``."""
    return Tally(
        count=tally.count + 1,
        last=n,
        disorder=tally.disorder + (n != tally.last + 1),
    )


def tally_of(numbers: Iterable[int]) -> Tally:
    """The tally of a whole sequence of numbers, in the order they were seen."""
    tally = Tally()
    for n in numbers:
        tally = observe(tally, n)
    return tally


def problems(sent: Mapping[str, int], seen: Mapping[str, Tally]) -> list[str]:
    """Why ``seen`` is not ``sent[session]`` messages per session, once each, in order."""
    found = []
    for session, count in sorted(sent.items()):
        tally = seen.get(session, Tally())
        if tally.count < count:
            found.append(f"session {session}: {count - tally.count} of {count} messages lost")
        elif tally.count > count:
            found.append(f"session {session}: {tally.count - count} more applied than sent")
        if tally.disorder:
            found.append(f"session {session}: {tally.disorder} messages out of order or repeated")
    found.extend(f"session {s}: never sent to, yet seen" for s in sorted(seen.keys() - sent.keys()))
    return found


def verify(scenario: str, sent: Mapping[str, int], seen: Mapping[str, Tally]) -> None:
    """Raise :class:`CorrectnessError` naming the first problems, unless there are none."""
    found = problems(sent, seen)
    if found:
        shown = "; ".join(found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise CorrectnessError(f"{scenario}: {shown}{more}")
