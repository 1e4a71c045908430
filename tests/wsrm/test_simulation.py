"""Properties of the engine over a simulated lossy link (see ``sim.py``).

Scenarios are seeded and Hypothesis runs derandomized, so a run is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from durable_sessions.wsrm import faults
from durable_sessions.wsrm.actions import Completed, Faulted, Send, Terminated
from durable_sessions.wsrm.destination import DestinationStatus
from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.source import SourceStatus
from tests.wsrm.sim import DESTINATION, SOURCE, Link, Outcome, Simulation, faults_of

links = st.builds(
    Link,
    drop=st.sampled_from([0.0, 0.05, 0.1, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1, 0.3]),
    min_delay=st.just(0.001),
    max_delay=st.sampled_from([0.01, 0.3, 1.5, 3.0]),
)


@dataclass(frozen=True)
class Scenario:
    """Settings, link and seed of one simulated session."""

    messages: int
    seed: int
    source_settings: ReliableSessionSettings
    destination_settings: ReliableSessionSettings
    outbound: Link
    inbound: Link

    def run(self, *, restore_rate: float = 0.0, restore_seed: int = 0) -> Outcome:
        return Simulation(
            messages=self.messages,
            seed=self.seed,
            source_settings=self.source_settings,
            destination_settings=self.destination_settings,
            outbound=self.outbound,
            inbound=self.inbound,
            restore_rate=restore_rate,
            restore_seed=restore_seed,
        ).run()


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    window = draw(st.integers(1, 10))
    flow_control = draw(st.booleans())
    settings = ReliableSessionSettings(
        version=draw(st.sampled_from(list(RMVersion))),
        ordered=draw(st.booleans()),
        flow_control_enabled=flow_control,
        acknowledgement_interval=draw(st.sampled_from([0.05, 0.2, 1.0])),
        max_transfer_window_size=window,
    )
    # WCF asks for equal windows; a smaller destination window works only with flow control.
    destination_window = max(1, window + draw(st.integers(-4 if flow_control else 0, 4)))
    return Scenario(
        messages=draw(st.integers(0, 25)),
        seed=draw(st.integers(0, 2**32)),
        source_settings=settings,
        destination_settings=replace(settings, max_transfer_window_size=destination_window),
        outbound=draw(links),
        inbound=draw(links),
    )


@settings(max_examples=120, deadline=None, derandomize=True)
@given(scenarios())
def test_lossy_link_delivers_everything_exactly_once(scenario: Scenario) -> None:
    outcome = scenario.run()
    expected = list(range(scenario.messages))
    if scenario.source_settings.ordered:
        assert outcome.delivered == expected
    else:
        assert sorted(outcome.delivered) == expected
    assert outcome.source is not None
    assert outcome.destination is not None
    assert outcome.source.status is SourceStatus.TERMINATED
    assert outcome.destination.status is DestinationStatus.TERMINATED
    assert faults_of(outcome, SOURCE) == faults_of(outcome, DESTINATION) == []
    assert [a for _, s, a in outcome.trace if s == DESTINATION].count(Completed()) == 1
    retries = scenario.source_settings.max_retry_count
    assert max(outcome.transmissions.values(), default=1) <= retries + 1


@settings(max_examples=40, deadline=None, derandomize=True)
@given(scenarios(), st.integers(0, 2**32), st.sampled_from([0.1, 0.5, 1.0]))
def test_restoring_stored_state_is_indistinguishable_from_running_on(
    scenario: Scenario, restore_seed: int, restore_rate: float
) -> None:
    reference = scenario.run()
    restored = scenario.run(restore_rate=restore_rate, restore_seed=restore_seed)
    assume(restored.restores > 0)
    assert restored.trace == reference.trace
    assert restored.delivered == reference.delivered
    assert (restored.source, restored.destination) == (reference.source, reference.destination)


@pytest.mark.parametrize("version", list(RMVersion))
def test_perfect_link_needs_no_retransmission(version: RMVersion) -> None:
    outcome = Simulation(
        messages=50, seed=7, source_settings=ReliableSessionSettings(version=version)
    ).run()
    assert outcome.delivered == list(range(50))
    assert set(outcome.transmissions.values()) == {1}


def first_sends(outcome: Outcome) -> dict[int, float]:
    times: dict[int, float] = {}
    for now, side, action in outcome.trace:
        if side == SOURCE and isinstance(action, Send) and action.envelope.sequence:
            times.setdefault(action.envelope.sequence.message_number, now)
    return times


@pytest.mark.parametrize("version", list(RMVersion))
def test_a_link_that_dies_exhausts_the_retries_and_times_the_destination_out(
    version: RMVersion,
) -> None:
    cut = Link(max_delay=0.05, cut_at=0.5)
    outcome = Simulation(
        messages=20,
        seed=3,
        source_settings=ReliableSessionSettings(version=version, max_transfer_window_size=4),
        outbound=cut,
        inbound=cut,
    ).run()
    assert outcome.source is not None
    assert outcome.destination is not None
    unacknowledged = [m.number for m in outcome.source.unacknowledged]
    assert unacknowledged, "something must still be in flight when the link dies"
    assert all(outcome.transmissions[n] == 9 for n in unacknowledged)  # 1 send + 8 retries
    (source_fault,) = faults_of(outcome, SOURCE)
    assert source_fault.fault == faults.max_retry_count_exceeded("urn:uuid:sim")
    fault_time = next(t for t, s, a in outcome.trace if s == SOURCE and isinstance(a, Faulted))
    assert fault_time == pytest.approx(min(first_sends(outcome)[n] for n in unacknowledged) + 511)
    (destination_fault,) = faults_of(outcome, DESTINATION)
    assert destination_fault.fault == faults.inactivity_timeout_exceeded("urn:uuid:sim", 600.0)
    assert (
        destination_fault.fault.reason == "The inactivity timeout of (00:10:00) has been exceeded."
    )
    last_heard = outcome.destination.last_received
    destination_time = next(
        t for t, s, a in outcome.trace if s == DESTINATION and isinstance(a, Faulted)
    )
    assert destination_time == pytest.approx(last_heard + 600.0)
    assert outcome.destination.status is DestinationStatus.FAULTED


def test_a_dead_link_fails_the_create_sequence_after_the_retries() -> None:
    dead = Link(drop=1.0)
    outcome = Simulation(messages=1, seed=1, outbound=dead, inbound=dead).run()
    creates = [t for t, s, a in outcome.trace if s == SOURCE and isinstance(a, Send)]
    assert creates == [0, 1, 3, 7, 15, 31, 63, 127, 255]
    assert outcome.source is not None
    assert outcome.source.status is SourceStatus.FAULTED
    assert outcome.destination is None


def test_idle_sequence_is_kept_alive_then_times_out_when_the_link_dies() -> None:
    # Nothing is sent for an hour: AckRequested keep-alives every 5 minutes keep both ends up.
    link = Link(max_delay=0.05, cut_at=3600.0)
    outcome = Simulation(messages=3, seed=5, outbound=link, inbound=link, close=False).run()
    keep_alives = [
        t
        for t, s, a in outcome.trace
        if s == SOURCE
        and isinstance(a, Send)
        and a.envelope.ack_requested
        and a.envelope.sequence is None
    ]
    assert keep_alives[:3] == pytest.approx([300.0, 600.0, 900.0], abs=0.2)
    assert outcome.delivered == [0, 1, 2]
    (destination_fault,) = faults_of(outcome, DESTINATION)
    assert destination_fault.fault.rm_code is not None
    times = {s: t for t, s, a in outcome.trace if isinstance(a, Faulted)}
    assert times[DESTINATION] > 3600.0  # not before the link died
    (source_fault,) = faults_of(outcome, SOURCE)
    assert source_fault.fault == faults.inactivity_timeout_exceeded("urn:uuid:sim", 600.0)


def test_unordered_session_over_a_bad_link_still_delivers_exactly_once() -> None:
    bad = Link(drop=0.2, duplicate=0.3, max_delay=3.0)
    outcome = Simulation(
        messages=40,
        seed=11,
        source_settings=ReliableSessionSettings(ordered=False),
        outbound=bad,
        inbound=bad,
    ).run()
    assert sorted(outcome.delivered) == list(range(40))
    assert outcome.delivered != list(range(40))  # it really was reordered
    assert Terminated() in [a for _, s, a in outcome.trace if s == DESTINATION]
