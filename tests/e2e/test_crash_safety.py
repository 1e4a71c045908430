"""Crash safety with real processes: invariant 4 of DESIGN.md, tried with kills and restarts.

Worker processes (``python -m workers``) serve the journal service; a sender process sends a
random plan through its own outbox relay. Each test ends with the same verdict: every session's
state is exactly its plan (nothing lost, nothing applied twice, nothing out of order), every
message is applied, there are no dead letters, the outbox and the endpoint's queues are empty,
and the workers stop cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.model.records import utcnow
from tests.e2e.chaos import ChaosRelay
from tests.e2e.checks import all_applied, claims, progress, queues_empty, until
from tests.e2e.conftest import LEASE_S, POSTGRES, SQLITE, Run
from tests.e2e.faults import postgres_down, queue_stats, rabbitmq_down
from tests.e2e.processes import Proc
from tests.services import BROKER_URL

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

SEND_WITHIN_S = 180.0


def say(run: Run, test: str, **figures: object) -> None:
    """Print a test's figures (shown with ``-s``, and on failure)."""
    shown = " ".join(
        f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}"
        for name, value in figures.items()
    )
    print(f"e2e {test}[{run.kind}] seed={run.seed} {shown}")


async def reaches(run: Run, what: str, minimum: int, within_s: float = SEND_WITHIN_S) -> float:
    """Wait until ``what`` (a :class:`Progress` field) is at least ``minimum``."""

    async def reached() -> bool:
        return getattr(await progress(run.store), what) >= minimum

    return await until(reached, within_s, f"{what} >= {minimum}")


async def start_workers(run: Run, count: int = 3) -> list[Proc]:
    """Start ``count`` workers and wait until they serve."""
    workers = [run.fleet.worker() for _ in range(count)]
    await run.fleet.serving()
    return workers


async def every_worker_consumes(run: Run, workers: list[Proc]) -> bool:
    """True when every session queue has one consumer per worker."""
    stats = await queue_stats(run.topology, "consumers")
    return all(stats.get(q.name) == (len(workers),) for q in run.topology.session_queues)


def read_report(path: Path) -> dict[str, float]:
    """The counts a sender wrote with ``--report``."""
    counts: dict[str, float] = json.loads(path.read_text())
    return counts


def assert_never_restarted(workers: list[Proc]) -> None:
    """The workers ran through the whole test in their first process."""
    assert [(w.running, w.starts) for w in workers] == [(True, 1)] * len(workers)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("run", [POSTGRES, SQLITE], indirect=True)
async def test_hundreds_of_sessions_through_three_workers(run: Run) -> None:
    plan, path = run.plan(sessions=200, writes=10)
    workers = await start_workers(run)
    started = time.monotonic()
    report = run.directory / "sender.json"
    sender = run.fleet.sender(path, "--report", str(report))
    assert await sender.wait(SEND_WITHIN_S) == 0
    assert_never_restarted(workers)
    verdict = await run.finish(plan)
    sent = read_report(report)
    assert (sent["opened"], sent["new"]) == (len(plan.sessions), plan.message_count)
    say(
        run,
        "no-faults",
        sessions=verdict.sessions,
        messages=verdict.messages,
        duplicates=verdict.duplicates,
        seconds=time.monotonic() - started,
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("run", [POSTGRES, SQLITE], indirect=True)
async def test_workers_killed_at_random_points_lose_nothing(run: Run) -> None:
    plan, path = run.plan(sessions=100, writes=10)
    workers = await start_workers(run)
    sender = run.fleet.sender(path)
    # Three kill -9 and one SIGTERM (the batch in progress finishes, the rest goes back).
    stops = sorted((run.rng.uniform(0.1, 0.8), how) for how in ("kill", "kill", "kill", "term"))
    serving_again: list[float] = []
    for fraction, how in stops:
        await reaches(run, "applied", int(fraction * plan.message_count))
        victim = run.rng.choice(workers)
        stopped = time.monotonic()
        if how == "kill":
            victim.kill()
        else:
            assert await victim.stop() == 0
        victim.start()
        await victim.logged("serving", times=victim.starts)
        serving_again.append(time.monotonic() - stopped)
    assert await sender.wait(SEND_WITHIN_S) == 0
    verdict = await run.finish(plan)
    say(
        run,
        "worker-kills",
        sessions=verdict.sessions,
        messages=verdict.messages,
        stops=",".join(f"{how}@{fraction:.2f}" for fraction, how in stops),
        serving_again_s=",".join(f"{s:.1f}" for s in serving_again),
        duplicates=verdict.duplicates,
    )


@pytest.mark.timeout(240)
async def test_a_killed_sender_loses_nothing_and_resends_idempotently(run: Run) -> None:
    plan, path = run.plan(sessions=80, writes=10)
    workers = await start_workers(run)

    # Killed at a random point, its relay working normally.
    first = run.fleet.sender(path)
    await reaches(run, "sent", run.rng.randrange(plan.message_count // 10, plan.message_count // 3))
    first.kill()

    # Started again, its relay stuck on the broker, and killed while it holds claims.
    owner = "e2e-stalled-sender"
    stall_after = run.rng.randrange(20, 200)
    second = run.fleet.sender(
        path, "--relay-owner", owner, "--stall-publishing-after", str(stall_after)
    )
    await second.logged("publishing stalls now", within_s=SEND_WITHIN_S)

    async def holds_live_claims() -> bool:
        now = utcnow()
        return sum(end > now for end in (await claims(run.store, owner)).values()) >= 20

    await until(holds_live_claims, SEND_WITHIN_S, "the stalled sender holds 20 live claims")
    second.kill()
    killed_at = utcnow()
    orphans = {i: t for i, t in (await claims(run.store, owner)).items() if t > killed_at}
    assert len(orphans) >= 20

    # The workers' relays publish them once the claims end, and not before.
    async def orphans_taken_over() -> bool:
        now = utcnow()
        held = await claims(run.store, owner)
        early = {i: t for i, t in orphans.items() if i not in held and t > now}
        assert not early, f"claims taken over before they ended: {early}"
        return not held

    taken_over_s = await until(orphans_taken_over, 30 * LEASE_S, "the dead sender's claims")

    # Started for good: everything stored already is a repeat, the rest is new.
    stored = await progress(run.store)
    report = run.directory / "sender.json"
    third = run.fleet.sender(path, "--report", str(report))
    assert await third.wait(SEND_WITHIN_S) == 0
    sent = read_report(report)
    assert (sent["reopened"], sent["repeated"]) == (stored.sessions, stored.sent)
    assert sent["new"] == plan.message_count - stored.sent
    assert_never_restarted(workers)
    verdict = await run.finish(plan)
    say(
        run,
        "sender-kills",
        sessions=verdict.sessions,
        messages=verdict.messages,
        kills=2,
        orphaned_claims=len(orphans),
        taken_over_s=taken_over_s,
        resent_repeats=int(sent["repeated"]),
        duplicates=verdict.duplicates,
    )


@pytest.mark.timeout(240)
async def test_a_rabbitmq_restart_mid_run_loses_nothing(run: Run) -> None:
    plan, path = run.plan(sessions=100, writes=10)
    workers = await start_workers(run)
    await until(lambda: every_worker_consumes(run, workers), 30, "all workers consuming")
    # The sender's claims outlast the outage, so its own relay must publish them after it.
    report = run.directory / "sender.json"
    sender = run.fleet.sender(path, "--report", str(report), DS_OUTBOX_LEASE_S="60")
    # Early enough that the sender still sends while the broker is down.
    await reaches(run, "sent", int(run.rng.uniform(0.1, 0.3) * plan.message_count))
    async with rabbitmq_down() as outage:
        await sender.logged("outbox relay cannot publish")
        down = await progress(run.store)
    await reaches(run, "applied", down.applied + 1)
    resumed_s = time.monotonic() - outage.restarting_at
    await until(lambda: every_worker_consumes(run, workers), 60, "consuming again", poll_s=0.5)
    consuming_s = time.monotonic() - outage.restarting_at
    assert await sender.wait(SEND_WITHIN_S) == 0
    sent = read_report(report)
    assert sent["broker_errors"] > 0
    assert sent["published_after_broker_error"] > 0
    assert_never_restarted(workers)
    verdict = await run.finish(plan)
    say(
        run,
        "rabbitmq-restart",
        sessions=verdict.sessions,
        messages=verdict.messages,
        down_at_sent=down.sent,
        outage_s=outage.seconds,
        applying_again_within_s=resumed_s,
        consuming_again_within_s=consuming_s,
        sender_published_after=int(sent["published_after_broker_error"]),
        duplicates=verdict.duplicates,
    )


@pytest.mark.timeout(240)
async def test_a_postgres_restart_mid_run_loses_nothing(run: Run) -> None:
    plan, path = run.plan(sessions=80, writes=10)
    workers = await start_workers(run)
    sender = run.fleet.sender(path)
    await reaches(run, "sent", int(run.rng.uniform(0.1, 0.5) * plan.message_count))
    before = await progress(run.store)
    async with postgres_down() as outage:
        await sender.logged("not sent, trying again")
        for worker in workers:
            await worker.logged("sweep failed")
    await reaches(run, "applied", before.applied + 1)
    resumed_s = time.monotonic() - outage.restarting_at
    assert await sender.wait(SEND_WITHIN_S) == 0
    assert_never_restarted(workers)
    retried = sum(w.count("not applied, retrying") for w in workers)
    verdict = await run.finish(plan)
    say(
        run,
        "postgres-restart",
        sessions=verdict.sessions,
        messages=verdict.messages,
        down_at_sent=before.sent,
        outage_s=outage.seconds,
        applying_again_within_s=resumed_s,
        batches_retried=retried,
        duplicates=verdict.duplicates,
    )


@pytest.mark.timeout(240)
async def test_duplicated_and_reordered_deliveries_change_nothing(run: Run) -> None:
    plan, path = run.plan(sessions=60, writes=10)
    sender = run.fleet.sender(path, "--no-relay")
    assert await sender.wait(SEND_WITHIN_S) == 0
    broker = await RabbitBroker.connect(BROKER_URL)
    try:
        chaos = ChaosRelay(run.store, broker, run.rng)
        await broker.declare(run.topology)
        streams = await chaos.take()
        assert sum(map(len, streams.values())) == plan.message_count

        # Every message but each session's first, last first and some twice, while three
        # workers consume (a copy right after its original likely goes to another): all park.
        workers = await start_workers(run)
        await until(lambda: every_worker_consumes(run, workers), 30, "all workers consuming")
        await chaos.publish(
            chaos.interleave([chaos.backwards(s[1:], copies=5) for s in streams.values()])
        )
        waiting = plan.message_count - len(plan.sessions)
        await reaches(run, "parked", waiting)
        await queues_empty(run.topology, SEND_WITHIN_S)
        parked = await progress(run.store)
        assert (parked.parked, parked.applied) == (waiting, 0)

        # The first messages, some twice: every session applies, in order.
        firsts = [s[0] for s in streams.values()]
        await chaos.publish(chaos.backwards(firsts, copies=len(firsts) // 4))
        await all_applied(run.store, plan, SEND_WITHIN_S)
        # The copies of the firsts may still be queued: counted later, they would be taken for
        # copies of the next step.
        await queues_empty(run.topology, SEND_WITHIN_S)

        # Copies of applied messages: each one counted as a duplicate, none applied.
        applied = await progress(run.store)
        everything = [e for s in streams.values() for e in s]
        copies = run.rng.choices(everything, k=len(everything) // 2)
        await chaos.publish(copies)

        async def all_dropped() -> bool:
            return (await progress(run.store)).duplicates == applied.duplicates + len(copies)

        await until(all_dropped, SEND_WITHIN_S, f"{len(copies)} more duplicates counted")
        await chaos.release(everything)
    finally:
        await broker.close()
    verdict = await run.finish(plan)
    say(
        run,
        "broker-chaos",
        sessions=verdict.sessions,
        messages=verdict.messages,
        published=chaos.published,
        parked=waiting,
        duplicates=verdict.duplicates,
    )
