"""The throttle flags of ``worker``, ``python -m workers`` and ``up`` reach the workers' settings,
and ``up`` refuses several workers for a SINGLE service."""

from __future__ import annotations

from pathlib import Path

import pytest

import workers.main
from durable_sessions.cli import main as cli_main
from durable_sessions.cli import up
from durable_sessions.errors import SingletonInUse
from durable_sessions.settings import Settings
from tests.modes import SingleTallyService, TallyService, path_of

FLAGS = [
    "--max-concurrent-calls",
    "3",
    "--max-concurrent-sessions",
    "4",
    "--max-concurrent-instances",
    "5",
]
EXPECTED = {
    "DS_WORKER_MAX_CONCURRENT_CALLS": "3",
    "DS_WORKER_MAX_CONCURRENT_SESSIONS": "4",
    "DS_WORKER_MAX_CONCURRENT_INSTANCES": "5",
}


def limits_of(settings: Settings) -> tuple[int, int, int]:
    return (
        settings.worker_max_concurrent_calls,
        settings.worker_max_concurrent_sessions,
        settings.worker_max_concurrent_instances,
    )


@pytest.mark.parametrize("command", ["cli", "python-m"])
def test_the_worker_throttle_flags_set_the_worker_settings(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Settings] = []
    monkeypatch.setattr(workers.main, "run", lambda settings, *_: ran.append(settings))
    if command == "cli":
        cli_main(["worker", *FLAGS])
    else:
        workers.main.main(FLAGS)
    assert [limits_of(s) for s in ran] == [(3, 4, 5)]


def test_python_m_workers_refuses_a_throttle_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        workers.main.main(["--max-concurrent-calls", "0"])
    assert "must be at least 1, not 0" in capsys.readouterr().err


class Started(Exception):
    """Raised by the fake supervisor instead of starting processes."""


def test_up_passes_its_throttle_flags_to_every_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    envs: list[dict[str, str]] = []

    class Supervisor:
        def __init__(self, env: dict[str, str]) -> None:
            envs.append(env)
            raise Started

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DS_DATABASE_URL", f"sqlite:///{tmp_path / 'up.db'}")
    monkeypatch.setattr(up, "Supervisor", Supervisor)
    with pytest.raises(Started):
        cli_main(["up", "--service", path_of(TallyService), *FLAGS])
    (env,) = envs
    assert {k: env[k] for k in EXPECTED} == EXPECTED


def test_up_refuses_several_workers_for_a_single_service() -> None:
    single = [path_of(SingleTallyService)]
    with pytest.raises(SingletonInUse, match=r"`up --workers 2` would leave the others"):
        up.check_single_services(Settings(), 2, single)
    up.check_single_services(Settings(), 1, single)
    up.check_single_services(Settings(), 2, [path_of(TallyService)])
