"""Per-endpoint reliable-session settings as text: WCF's names, clear errors, and refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.app import create_app
from durable_sessions.errors import ConfigurationError
from durable_sessions.hosting.composition import reliable_options
from durable_sessions.reliable.options import endpoint_options, parse
from durable_sessions.settings import Settings
from durable_sessions.wsrm.messages import RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings

BASE = ReliableSessionSettings(inactivity_timeout=300.0)


def test_every_served_setting_is_read_with_wcf_names() -> None:
    text = (
        "calculator:AcknowledgementInterval=00:00:00.5, FlowControlEnabled=false,"
        "InactivityTimeout=00:01:30,MaxPendingChannels=16,MaxTransferWindowSize=32,"
        "ReliableMessagingVersion=WSReliableMessaging11,Ordered=true;"
        " other:max_transfer_window_size=2"
    )
    parsed = parse(text)
    assert set(parsed) == {"calculator", "other"}
    options = endpoint_options("calculator", parsed["calculator"], BASE)
    assert options.settings == ReliableSessionSettings(
        acknowledgement_interval=0.5,
        flow_control_enabled=False,
        inactivity_timeout=90.0,
        max_pending_channels=16,
        max_transfer_window_size=32,
        version=RMVersion.WSRM_1_1,
    )
    assert options.versions == (RMVersion.WSRM_1_1,)
    other = endpoint_options("other", parsed["other"], BASE)
    assert other.settings == ReliableSessionSettings(
        inactivity_timeout=300.0, max_transfer_window_size=2
    )
    assert other.versions == tuple(RMVersion)  # no version named: both are spoken
    assert endpoint_options(
        "x", {"InactivityTimeout": "1.5"}, BASE
    ).settings.inactivity_timeout == (1.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("calculator", "write endpoint:Name=value,Name=value"),
        ("calculator:Window", "'Window' is not Name=value"),
        ("a:Ordered=true;a:Ordered=true", "name 'a' twice"),
    ],
)
def test_syntax_errors_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse(text)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"MaxWindow": "4"},
            "'MaxWindow' is not a reliable-session setting .*MaxTransferWindowSize",
        ),
        ({"MaxTransferWindowSize": "lots"}, "MaxTransferWindowSize='lots'"),
        ({"MaxTransferWindowSize": "5000"}, "max_transfer_window_size must be between 1 and 4096"),
        ({"FlowControlEnabled": "yes"}, "write true or false"),
        ({"ReliableMessagingVersion": "2"}, "write WSReliableMessagingFebruary2005 or"),
        ({"InactivityTimeout": "-1"}, "inactivity_timeout must be a positive number"),
        ({"Ordered": "false"}, "Ordered=false cannot be served: .* in the order they were sent"),
        ({"MaxRetryCount": "3"}, "MaxRetryCount is the RM source's setting, .* client's"),
        ({"InitialRetryInterval": "2"}, "InitialRetryInterval is the RM source's setting"),
    ],
)
def test_bad_or_unservable_settings_are_refused_with_the_reason(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        endpoint_options("calculator", values, BASE)


def test_an_endpoint_not_served_here_is_an_error() -> None:
    settings = Settings(reliable_sessions="calculater:Ordered=true")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="'calculater', which this process does not"):
        reliable_options(settings, ["calculator"])


def test_the_control_plane_refuses_to_start_unordered(tmp_path: Path) -> None:
    settings = Settings(
        api_keys="k",  # type: ignore[arg-type]
        api_keys_file=str(tmp_path / "keys"),
        reliable_sessions="calculator:Ordered=false",
    )
    with pytest.raises(ConfigurationError, match="Ordered=false cannot be served"):
        create_app(settings)


def test_settings_add_command_line_entries_to_the_environment() -> None:
    settings = Settings(reliable_sessions="a:Ordered=true")  # type: ignore[call-arg]
    added = settings.with_reliable_sessions(["b:MaxPendingChannels=2"])
    assert added.reliable_sessions == "a:Ordered=true;b:MaxPendingChannels=2"
    assert settings.with_reliable_sessions([]) is settings


@pytest.mark.parametrize(
    "command",
    [["workers"], ["durable_sessions", "worker"], ["durable_sessions", "up"]],
    ids=["python -m workers", "worker", "up"],
)
def test_the_command_line_flag_is_read_and_refuses_an_unordered_endpoint(
    tmp_path: Path, command: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command, "--reliable-session", "calculator:Ordered=false"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DS_DATABASE_URL": f"sqlite:///{tmp_path / 'db'}"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 1, done.stderr
    assert "error: endpoint 'calculator': Ordered=false cannot be served" in done.stderr
