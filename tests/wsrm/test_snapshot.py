"""Sequence state survives storage as JSON; anything else is refused with a typed error."""

from __future__ import annotations

import json

import pytest

from durable_sessions.wsrm import snapshot
from durable_sessions.wsrm.errors import InvalidSnapshot
from durable_sessions.wsrm.messages import Payload
from tests.wsrm.sim import Link, Simulation


def test_states_with_everything_filled_in_round_trip_through_json() -> None:
    lossy = Link(drop=0.3, max_delay=2.0)
    simulation = Simulation(messages=12, seed=3, outbound=lossy, inbound=lossy, until=3.0)
    outcome = simulation.run()  # stopped mid-flight: payloads unacknowledged, messages held
    source, destination = outcome.source, outcome.destination
    assert source is not None
    assert destination is not None
    assert source.unacknowledged
    assert source.acknowledged
    assert destination.received
    assert destination.held
    assert any(isinstance(m.payload, Payload) for m in source.unacknowledged)
    assert snapshot.load_source(json.loads(json.dumps(snapshot.dump(source)))) == source
    restored = snapshot.load_destination(json.loads(json.dumps(snapshot.dump(destination))))
    assert restored == destination


@pytest.mark.parametrize(
    "data",
    [None, {}, {"status": "open"}, "not a mapping", {"identifier": 3, "acks_to": []}],
)
def test_garbage_is_not_a_snapshot(data: object) -> None:
    with pytest.raises(InvalidSnapshot):
        snapshot.load_source(data)
    with pytest.raises(InvalidSnapshot):
        snapshot.load_destination(data)


def test_values_are_validated_on_load() -> None:
    simulation = Simulation(messages=2, seed=1)
    outcome = simulation.run()
    assert outcome.destination is not None
    data = snapshot.dump(outcome.destination)
    data["received"]["ranges"] = [{"lower": 5, "upper": 2}]  # a reversed range
    with pytest.raises(InvalidSnapshot, match="reversed"):
        snapshot.load_destination(data)
