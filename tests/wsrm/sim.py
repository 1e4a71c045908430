"""A seeded simulation: an RM source and destination talking over a lossy link.

The link drops, duplicates, delays and so reorders envelopes in each direction; every envelope
crosses it as bytes (codec on both ends). Time is simulated and driven only by the link and the
engines' own wakeup requests. The application sends ``messages`` messages as fast as the source
allows, then closes. Optionally each side's state is stored and restored (through JSON) at random
points, as a crash and restart would; nothing else survives that, so the run must not change.
"""

from __future__ import annotations

import heapq
import json
import random
from collections import Counter
from dataclasses import dataclass, field

from durable_sessions.wsrm import snapshot
from durable_sessions.wsrm.actions import (
    Action,
    Deliver,
    Faulted,
    ScheduleWakeup,
    Send,
)
from durable_sessions.wsrm.destination import DestinationSequenceState, ReliableDestination
from durable_sessions.wsrm.messages import CreateSequence, Envelope, Payload
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.source import ReliableSource, SourceSequenceState, SourceStatus
from durable_sessions.wsrm.xml import codec

SOURCE, DESTINATION = "source", "destination"
_DEST = "http://destination.example/svc"
_ARRIVAL, _WAKE = 0, 1  # at equal times, arrivals are handled before wakeups


@dataclass(frozen=True)
class Link:
    """One direction of the network: loss and duplication odds, delay bounds, a cut-off time."""

    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: float = 0.001
    max_delay: float = 0.05
    cut_at: float | None = None  # from then on everything is lost


@dataclass
class Outcome:
    """What happened: the trace of effects, deliveries and end states."""

    trace: list[tuple[float, str, Action]] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    transmissions: Counter[int] = field(default_factory=Counter)
    source: SourceSequenceState | None = None
    destination: DestinationSequenceState | None = None
    restores: int = 0


class Simulation:
    """Run one seeded scenario; :meth:`run` returns the :class:`Outcome`."""

    def __init__(
        self,
        *,
        messages: int,
        seed: int,
        source_settings: ReliableSessionSettings | None = None,
        destination_settings: ReliableSessionSettings | None = None,
        outbound: Link = Link(),
        inbound: Link = Link(),
        restore_rate: float = 0.0,
        restore_seed: int = 0,
        close: bool = True,
        until: float = 1e6,
    ) -> None:
        self.source = ReliableSource(source_settings or ReliableSessionSettings())
        self.destination = ReliableDestination(destination_settings or self.source.settings)
        self.version = self.source.version
        self.messages = messages
        self.links = {DESTINATION: outbound, SOURCE: inbound}  # keyed by the receiving side
        self.network = random.Random(seed)
        self.crashes = random.Random(restore_seed)
        self.restore_rate = restore_rate
        self.close = close
        self.until = until
        self.events: list[tuple[float, int, int, str, bytes]] = []
        self.counter = 0
        self.wakes: dict[str, set[float]] = {SOURCE: set(), DESTINATION: set()}
        self.sent = 0
        self.budget: int | None = None  # flow control, recomputed from what the source saw
        self.outcome = Outcome()
        self.src: SourceSequenceState
        self.dst: DestinationSequenceState | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _push(self, at: float, kind: int, side: str, data: bytes = b"") -> None:
        self.counter += 1
        heapq.heappush(self.events, (at, kind, self.counter, side, data))

    def _transmit(self, to_side: str, envelope: Envelope, now: float) -> None:
        link = self.links[to_side]
        data = codec.encode(envelope, self.version)
        copies = 2 if self.network.random() < link.duplicate else 1
        for _ in range(copies):
            lost = self.network.random() < link.drop
            delay = self.network.uniform(link.min_delay, link.max_delay)
            if not lost and (link.cut_at is None or now < link.cut_at):
                self._push(now + delay, _ARRIVAL, to_side, data)

    def _schedule(self, side: str, at: float) -> None:
        # One pending wakeup per side is enough: every step asks again for the next one.
        if not any(t <= at for t in self.wakes[side]):
            self.wakes[side].add(at)
            self._push(at, _WAKE, side)

    def _effects(self, side: str, actions: list[Action], now: float) -> None:
        other = DESTINATION if side == SOURCE else SOURCE
        for action in actions:
            if isinstance(action, ScheduleWakeup):
                self._schedule(side, action.at)
                continue
            self.outcome.trace.append((now, side, action))
            if isinstance(action, Send):
                self._transmit(other, action.envelope, now)
                sequence = action.envelope.sequence
                if side == SOURCE and sequence is not None:
                    self.outcome.transmissions[sequence.message_number] += 1
            elif isinstance(action, Deliver):
                assert action.payload is not None
                self.outcome.delivered.append(int(action.payload.xml[3:-4]))

    def _maybe_restore(self, side: str) -> None:
        if self.crashes.random() >= self.restore_rate:
            return
        self.outcome.restores += 1
        self.wakes[side].clear()  # timers die with the process
        if side == SOURCE:
            self.src = snapshot.load_source(json.loads(json.dumps(snapshot.dump(self.src))))
            wake = self.source.next_wakeup(self.src)
        else:
            assert self.dst is not None
            self.dst = snapshot.load_destination(json.loads(json.dumps(snapshot.dump(self.dst))))
            wake = self.destination.next_wakeup(self.dst)
        if wake is not None:
            self._schedule(side, wake)

    # -- the two sides ----------------------------------------------------------------------

    def _source_step(self, actions: list[Action], now: float) -> None:
        self._effects(SOURCE, actions, now)
        self._check_source()
        self._maybe_restore(SOURCE)

    def _destination_step(self, actions: list[Action], now: float) -> None:
        self._effects(DESTINATION, actions, now)
        if self.dst is not None:
            self._check_destination()
            self._maybe_restore(DESTINATION)

    def _application(self, now: float) -> None:
        """Send as much as the source takes, then close."""
        settings = self.source.settings
        while self.src.status is SourceStatus.OPEN and self.sent < self.messages:
            if self.source.available(self.src) == 0:
                return
            if settings.flow_control_enabled and self.budget is not None:
                assert self.budget > 0, "sent beyond the destination's advertised buffer"
                self.budget -= 1
            self.src, actions = self.source.send(
                self.src, action="urn:op", payload=Payload(f"<m>{self.sent}</m>".encode()), now=now
            )
            self.sent += 1
            self._source_step(actions, now)
        if self.close and self.src.status is SourceStatus.OPEN:
            self.src, actions = self.source.close(self.src, now)
            self._source_step(actions, now)

    def _at_source(self, envelope: Envelope, now: float) -> None:
        before = self.src
        self.src, actions = self.source.receive(self.src, envelope, now)
        newly = len(self.src.unacknowledged) < len(before.unacknowledged)
        for ack in envelope.acknowledgements:
            if ack.identifier == before.identifier and ack.buffer_remaining is not None:
                if before.status is SourceStatus.FAULTED or self.src.status is SourceStatus.FAULTED:
                    continue
                # Restated independently: in flight after an ack may not exceed its buffer.
                advertised = ack.buffer_remaining - len(self.src.unacknowledged)
                fresh = newly or self.budget is None
                self.budget = advertised if fresh else max(self.budget or 0, advertised)
        self._source_step(actions, now)
        self._application(now)

    def _at_destination(self, envelope: Envelope, now: float) -> None:
        if isinstance(envelope.body, CreateSequence):
            if self.dst is None:
                self.dst, actions = self.destination.create(
                    envelope, identifier="urn:uuid:sim", pending=0, address=_DEST, now=now
                )
            else:  # a retransmitted CreateSequence gets the same answer
                assert envelope.message_id == self.dst.create_message_id
                actions = [Send(self.destination.create_response(self.dst, envelope, _DEST))]
        elif self.dst is None:
            actions = self.destination.refuse_unknown(envelope)
        else:
            self.dst, actions = self.destination.receive(self.dst, envelope, now)
        self._destination_step(actions, now)

    # -- invariants -------------------------------------------------------------------------

    def _check_source(self) -> None:
        state, settings = self.src, self.source.settings
        start = state.unacknowledged[0].number if state.unacknowledged else state.next_number
        assert state.next_number - start <= settings.max_transfer_window_size
        assert all(m.attempts <= settings.max_retry_count + 1 for m in state.unacknowledged)

    def _check_destination(self) -> None:
        if self.dst is None:
            return
        window = self.destination.settings.max_transfer_window_size
        contiguous = self.dst.received.highest_contiguous()
        assert len(self.dst.held) < window
        assert all(contiguous < m.number <= contiguous + window for m in self.dst.held)

    # -- running ----------------------------------------------------------------------------

    def run(self) -> Outcome:
        self.src, actions = self.source.create(
            to=_DEST, acks_to="http://source", message_id="urn:uuid:create", now=0.0
        )
        self._source_step(actions, 0.0)
        self._application(0.0)
        while self.events:
            now, kind, _, side, data = heapq.heappop(self.events)
            if now > self.until:
                break
            if kind == _WAKE:
                if now not in self.wakes[side]:
                    continue  # superseded by a restore
                self.wakes[side].discard(now)
                if side == SOURCE:
                    self.src, actions = self.source.wakeup(self.src, now)
                    self._source_step(actions, now)
                    self._application(now)
                elif self.dst is not None:
                    self.dst, actions = self.destination.wakeup(self.dst, now)
                    self._destination_step(actions, now)
            elif side == SOURCE:
                self._at_source(codec.decode(data), now)
            else:
                self._at_destination(codec.decode(data), now)
        self.outcome.source, self.outcome.destination = self.src, self.dst
        return self.outcome


def faults_of(outcome: Outcome, side: str) -> list[Faulted]:
    """The Faulted effects one side produced."""
    return [a for _, s, a in outcome.trace if s == side and isinstance(a, Faulted)]
