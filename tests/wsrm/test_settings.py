"""ReliableSessionSettings: WCF's defaults and WCF's range checks."""

from __future__ import annotations

import math

import pytest

from durable_sessions.errors import ConfigurationError
from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings


def test_defaults_are_wcf_defaults() -> None:
    settings = ReliableSessionSettings()
    assert settings.acknowledgement_interval == 0.2
    assert settings.flow_control_enabled is True
    assert settings.inactivity_timeout == 600.0
    assert settings.max_pending_channels == 4
    assert settings.max_retry_count == 8
    assert settings.max_transfer_window_size == 8
    assert settings.ordered is True
    assert settings.version is RMVersion.WSRM_2005_02
    assert settings.initial_retry_interval == 1.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("acknowledgement_interval", 0.0, "acknowledgement_interval must be a positive number"),
        ("acknowledgement_interval", -1.0, "acknowledgement_interval must be a positive number"),
        ("inactivity_timeout", math.nan, "inactivity_timeout must be a positive number"),
        ("inactivity_timeout", math.inf, "inactivity_timeout must be a positive number"),
        ("initial_retry_interval", 0.0, "initial_retry_interval must be a positive number"),
        ("max_pending_channels", 0, "max_pending_channels must be between 1 and 16384, got 0"),
        ("max_pending_channels", 16385, "max_pending_channels must be between 1 and 16384"),
        ("max_retry_count", 0, "max_retry_count must be between 1 and 2147483647, got 0"),
        ("max_transfer_window_size", 0, "max_transfer_window_size must be between 1 and 4096"),
        ("max_transfer_window_size", 4097, "max_transfer_window_size must be between 1 and 4096"),
        ("max_transfer_window_size", True, "max_transfer_window_size must be between 1 and 4096"),
        ("version", "http://example.org/rm", "version must be an RMVersion"),
    ],
)
def test_out_of_range_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ReliableSessionSettings(**{field: value})  # type: ignore[arg-type]


def test_bounds_themselves_are_accepted() -> None:
    settings = ReliableSessionSettings(
        max_pending_channels=16384, max_transfer_window_size=4096, max_retry_count=1
    )
    assert settings.max_transfer_window_size == 4096
