"""Reliable session settings, with WCF's ``ReliableSessionBindingElement`` defaults and ranges."""

from __future__ import annotations

import math
from dataclasses import dataclass

from durable_sessions.errors import ConfigurationError
from durable_sessions.wsrm.messages import RMVersion


def _positive_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def _in_range(name: str, value: int, lower: int, upper: int) -> None:
    if isinstance(value, bool) or not lower <= value <= upper:
        raise ConfigurationError(f"{name} must be between {lower} and {upper}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ReliableSessionSettings:
    """How a reliable session behaves; the defaults are WCF's.

    - ``acknowledgement_interval``: longest the destination waits before acknowledging.
    - ``flow_control_enabled``: the destination advertises its free buffer (netrm:BufferRemaining)
      and the source sends no more new messages than that.
    - ``inactivity_timeout``: silence from the peer for this long faults the sequence; the source
      sends AckRequested keep-alives after half of it.
    - ``max_pending_channels``: sequences created but not yet accepted by the application, beyond
      which CreateSequence is refused (ConnectionLimitReached).
    - ``max_retry_count``: retransmissions of one message before the sequence faults.
    - ``max_transfer_window_size``: unacknowledged messages the source may have outstanding, and
      messages the destination buffers ahead of a gap; later ones are dropped.
    - ``ordered``: deliver in message-number order (else as they arrive, still exactly once);
      an endpoint refuses False, since its sessions apply in order (``reliable.options``).
    - ``version``: the WS-RM version spoken (WCF's default is February 2005).
    - ``initial_retry_interval``: first retransmission delay, doubled after each retry. Not a WCF
      setting: WCF starts near 1 s and adapts it to the measured round trip.
    """

    acknowledgement_interval: float = 0.2
    flow_control_enabled: bool = True
    inactivity_timeout: float = 600.0
    max_pending_channels: int = 4
    max_retry_count: int = 8
    max_transfer_window_size: int = 8
    ordered: bool = True
    version: RMVersion = RMVersion.WSRM_2005_02
    initial_retry_interval: float = 1.0

    def __post_init__(self) -> None:
        _positive_seconds("acknowledgement_interval", self.acknowledgement_interval)
        _positive_seconds("inactivity_timeout", self.inactivity_timeout)
        _positive_seconds("initial_retry_interval", self.initial_retry_interval)
        _in_range("max_pending_channels", self.max_pending_channels, 1, 16384)
        _in_range("max_retry_count", self.max_retry_count, 1, 2**31 - 1)
        _in_range("max_transfer_window_size", self.max_transfer_window_size, 1, 4096)
        if not isinstance(self.version, RMVersion):
            raise ConfigurationError(f"version must be an RMVersion, got {self.version!r}")
