"""What a run sends: sessions, the values each one writes, and deterministic message ids.

The plan is written to a file the sender process reads, so a restarted sender sends exactly the
same calls with exactly the same ids, and its repeats are recognised as such. The expected end
of every session follows from the plan alone: its state holds the planned values, in order.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durable_sessions.model.records import JSON


@dataclass(frozen=True, slots=True)
class Call:
    """One planned operation call of a session."""

    message_id: str
    operation: str
    args: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class Plan:
    """The sessions of one run and the values each writes, in order."""

    endpoint: str
    sessions: dict[str, list[int]]

    @classmethod
    def random(cls, rng: random.Random, endpoint: str, sessions: int, writes: int) -> Plan:
        """``sessions`` sessions of ``writes`` random values each, ids drawn from ``rng``."""
        ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(sessions)]
        return cls(
            endpoint, {sid: [rng.randrange(1_000_000) for _ in range(writes)] for sid in ids}
        )

    @classmethod
    def load(cls, path: Path) -> Plan:
        """The plan written to ``path`` by :meth:`save`."""
        document: dict[str, Any] = json.loads(path.read_text())
        return cls(document["endpoint"], document["sessions"])

    def save(self, path: Path) -> Path:
        """Write the plan to ``path`` as JSON."""
        path.write_text(json.dumps({"endpoint": self.endpoint, "sessions": self.sessions}))
        return path

    def calls(self, session_id: str) -> list[Call]:
        """The calls of a session: ``begin``, one ``write`` per value, ``finish``."""
        values = self.sessions[session_id]
        calls = [Call(self.message_id(session_id, 1), "begin", {"name": session_id})]
        calls += [
            Call(self.message_id(session_id, seq), "write", {"value": value})
            for seq, value in enumerate(values, start=2)
        ]
        calls.append(Call(self.message_id(session_id, len(values) + 2), "finish", {}))
        return calls

    def expected_seq(self, session_id: str) -> int:
        """The seq of the last call of a session: how many messages it is sent."""
        return len(self.sessions[session_id]) + 2

    @property
    def message_count(self) -> int:
        """Messages sent in the whole run."""
        return sum(self.expected_seq(sid) for sid in self.sessions)

    @staticmethod
    def message_id(session_id: str, seq: int) -> str:
        """The id of a session's ``seq``-th call: the same in every sender that sends it."""
        return f"{session_id}.{seq}"
