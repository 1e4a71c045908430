"""WCF's ``MaxPendingChannels``: sequences handshaken by one listener and not yet accepted.

In WCF a CreateSequence makes a channel that waits in its listener's queue until the service
accepts it, which the dispatcher does promptly; only when more than ``MaxPendingChannels``
wait is the next CreateSequence refused (CreateSequenceRefused/ConnectionLimitReached). Here a
sequence is accepted when its session is opened in the store: from the moment a CreateSequence
is taken until that transaction ends, the sequence is pending. :class:`PendingChannels` counts
them for one endpoint in one process (the listener), so idle sequences, accepted long ago,
never hold a place, and a slow store refuses new sequences rather than queueing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class PendingChannels:
    """The sequences of one endpoint that this process has taken and not yet accepted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @contextmanager
    def waiting(self) -> Iterator[int]:
        """Count a new sequence as pending for the block; yields how many were pending before.

        When ``limit`` were already pending the new one is not counted: it is refused.
        """
        ahead = self.count
        admitted = ahead < self.limit
        if admitted:
            self.count += 1
        try:
            yield ahead
        finally:
            if admitted:
                self.count -= 1
