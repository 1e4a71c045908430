"""Per-endpoint reliable-session settings, written as text: ``endpoint:Name=value,...;other:...``.

Names are WCF's ``ReliableSessionBindingElement`` properties (case and underscores do not
matter, so ``max_transfer_window_size`` is ``MaxTransferWindowSize``)::

    AcknowledgementInterval   seconds, or a TimeSpan such as 00:00:00.2
    FlowControlEnabled        true / false
    InactivityTimeout         seconds, or a TimeSpan such as 00:10:00
    MaxPendingChannels        1..16384
    MaxTransferWindowSize     1..4096
    ReliableMessagingVersion  WSReliableMessagingFebruary2005 or WSReliableMessaging11: the
                              endpoint then speaks only that version (by default, both)
    Ordered                   true only: a session applies its messages in order

``MaxRetryCount`` and the retry interval belong to the RM source, which is the client: an
endpoint never retransmits (its replies travel on the answers to the source's retransmissions),
so they are refused here. Every error says what is wrong and what to write instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from durable_sessions.errors import ConfigurationError
from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings

UNORDERED = (
    "Ordered=false cannot be served: the reliable-session binding delivers into a session, "
    "which applies its messages in the order they were sent, exactly once, and that order is "
    "its guarantee; leave Ordered=true (WCF's default), or send one-way messages without a "
    "session to a datagram endpoint"
)
CLIENT_ONLY = (
    "{0} is the RM source's setting, and the source is the client: an endpoint never "
    "retransmits (its replies travel on the answers to the source's retransmissions); set it "
    "in the client's ReliableSessionSettings"
)

_VERSIONS = {
    "wsreliablemessagingfebruary2005": RMVersion.WSRM_2005_02,
    "february2005": RMVersion.WSRM_2005_02,
    "wsreliablemessaging11": RMVersion.WSRM_1_1,
    "1.1": RMVersion.WSRM_1_1,
}
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d{1,7})?)$")


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    """How one endpoint's reliable sessions behave.

    ``settings`` are WCF's (their ``version`` answers envelopes whose version cannot be told);
    ``versions`` are the WS-RM versions it accepts CreateSequence in.
    """

    settings: ReliableSessionSettings = dataclasses.field(default_factory=ReliableSessionSettings)
    versions: tuple[RMVersion, ...] = tuple(RMVersion)


def _seconds(value: str) -> float:
    found = _TIMESPAN.match(value)
    if found is None:
        return float(value)
    days, hours, minutes, secs = found.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(secs)


def _boolean(value: str) -> bool:
    known = {"true": True, "false": False}
    if value.lower() not in known:
        raise ValueError("write true or false")
    return known[value.lower()]


def _version(value: str) -> RMVersion:
    if value.lower() not in _VERSIONS:
        raise ValueError("write WSReliableMessagingFebruary2005 or WSReliableMessaging11")
    return _VERSIONS[value.lower()]


_FIELDS: dict[str, tuple[str, str, Callable[[str], object]]] = {
    "acknowledgementinterval": ("AcknowledgementInterval", "acknowledgement_interval", _seconds),
    "flowcontrolenabled": ("FlowControlEnabled", "flow_control_enabled", _boolean),
    "inactivitytimeout": ("InactivityTimeout", "inactivity_timeout", _seconds),
    "maxpendingchannels": ("MaxPendingChannels", "max_pending_channels", int),
    "maxtransferwindowsize": ("MaxTransferWindowSize", "max_transfer_window_size", int),
    "reliablemessagingversion": ("ReliableMessagingVersion", "version", _version),
    "version": ("ReliableMessagingVersion", "version", _version),
    "ordered": ("Ordered", "ordered", _boolean),
}
_CLIENT_ONLY = {
    "maxretrycount": "MaxRetryCount",
    "initialretryinterval": "InitialRetryInterval",
}


def parse(text: str) -> dict[str, dict[str, str]]:
    """The ``Name=value`` pairs of each endpoint in ``text``; syntax errors say where."""
    found: dict[str, dict[str, str]] = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        endpoint, colon, pairs = entry.partition(":")
        endpoint = endpoint.strip()
        if not colon or not endpoint:
            raise ConfigurationError(
                f"reliable-session settings {entry!r}: write endpoint:Name=value,Name=value"
            )
        if endpoint in found:
            raise ConfigurationError(f"reliable-session settings name {endpoint!r} twice")
        values: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in pairs.split(","))):
            name, equals, value = pair.partition("=")
            if not equals or not name.strip() or not value.strip():
                raise ConfigurationError(
                    f"reliable-session settings of {endpoint!r}: {pair!r} is not Name=value"
                )
            values[name.strip()] = value.strip()
        found[endpoint] = values
    return found


def endpoint_options(
    endpoint: str, values: Mapping[str, str], base: ReliableSessionSettings
) -> EndpointOptions:
    """``base`` with the ``Name=value`` settings of ``endpoint`` applied, for serving."""
    changes: dict[str, object] = {}
    for name, value in values.items():
        key = name.replace("_", "").lower()
        if key in _CLIENT_ONLY:
            raise ConfigurationError(f"endpoint {endpoint!r}: {CLIENT_ONLY.format(name)}")
        if key not in _FIELDS:
            known = ", ".join(sorted({wcf for wcf, _, _ in _FIELDS.values()}))
            raise ConfigurationError(
                f"endpoint {endpoint!r}: {name!r} is not a reliable-session setting ({known})"
            )
        wcf, field, convert = _FIELDS[key]
        try:
            changes[field] = convert(value)
        except ValueError as error:
            raise ConfigurationError(f"endpoint {endpoint!r}: {wcf}={value!r}: {error}") from error
    try:
        settings = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    except ConfigurationError as error:
        raise ConfigurationError(f"endpoint {endpoint!r}: {error}") from error
    check_served(endpoint, settings)
    versions = (settings.version,) if "version" in changes else tuple(RMVersion)
    return EndpointOptions(settings, versions)


def check_served(endpoint: str, settings: ReliableSessionSettings) -> None:
    """Refuse settings an endpoint cannot serve (``ordered=False``), saying why."""
    if not settings.ordered:
        raise ConfigurationError(f"endpoint {endpoint!r}: {UNORDERED}")
