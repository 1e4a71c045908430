"""``/ui/``: the overview of sessions, throughput, outbox, dead letters, faults and workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.deps import Plane
from api.ui.auth import SignedIn
from api.ui.render import duration, live, page
from durable_sessions.hosting.sampler import Interval
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import utcnow
from durable_sessions.store.base import SessionQuery

router = APIRouter()
WORKERS_WINDOW = timedelta(minutes=1)
FAULTED_SHOWN = 10
SPARK_STEP = 10


def _spark(intervals: list[Interval]) -> dict[str, Any]:
    """An SVG polyline of the apply rate, scaled to its peak."""
    peak = max((i.applied_per_s for i in intervals), default=0.0)
    scale = 38 / peak if peak > 0 else 0.0
    points = " ".join(
        f"{n * SPARK_STEP},{39 - i.applied_per_s * scale:.1f}" for n, i in enumerate(intervals)
    )
    span = intervals[-1].ended - intervals[0].ended if len(intervals) > 1 else 0
    return {
        "points": points,
        "width": max(SPARK_STEP, (len(intervals) - 1) * SPARK_STEP),
        "peak": peak,
        "minutes": max(1, round(span / 60)),
    }


@router.get("/")
async def overview(request: Request, login: SignedIn, plane: Plane) -> HTMLResponse:
    """The overview page (or, polled by htmx, its live region)."""
    now = utcnow()
    async with plane.store.snapshot() as uow:
        states = await uow.sessions.count_by_state()
        outbox = await uow.outbox.stats()
        waiting = await uow.dead_letters.count_waiting()
        faulted = await uow.sessions.find(
            SessionQuery(state=SessionState.FAULTED, limit=FAULTED_SHOWN + 1)
        )
        listener_faults = len(await uow.listener_faults.all())
        workers = await uow.workers.seen_since(now - WORKERS_WINDOW)
    intervals = plane.sampler.intervals()
    recent = [
        {
            "ended": datetime.fromtimestamp(i.ended, UTC).strftime("%H:%M:%S"),
            "applied_per_s": i.applied_per_s,
            "mean_latency_s": i.mean_latency_s,
        }
        for i in reversed(intervals[-12:])
    ]
    lag = (
        "none waiting"
        if outbox.oldest_created_at is None
        else duration((now - outbox.oldest_created_at).total_seconds())
    )
    context = {
        "states": [(state.value, states.get(state, 0)) for state in SessionState],
        "intervals": intervals,
        "recent": recent,
        "spark": _spark(intervals) if intervals else None,
        "every_s": plane.sampler.every_s,
        "outbox": outbox,
        "outbox_lag": lag,
        "dead_letters": waiting,
        "faulted": faulted[:FAULTED_SHOWN],
        "more_faulted": len(faulted) > FAULTED_SHOWN,
        "listener_faults": listener_faults,
        "workers": workers,
        "workers_window": "minute",
    }
    name = "_overview.html" if live(request, "overview-live") else "overview.html"
    return page(request, login, name, context)
