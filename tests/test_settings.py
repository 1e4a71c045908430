"""Settings from DS_* variables, with secrets kept out of logs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from durable_sessions.engine.instancing import CPUS, Throttles
from durable_sessions.hosting.composition import throttles
from durable_sessions.settings import Settings, redact_url


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DS_DATABASE_URL", "DS_BROKER_URL", "DS_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./durable-sessions.db"
    assert settings.broker_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.api_key_list() == []
    assert settings.service_paths() == ["durable_sessions.examples.calculator:CalculatorService"]


def test_environment_and_driver_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_DATABASE_URL", "postgresql://app:s3cret@db:5432/sessions")
    monkeypatch.setenv("DS_API_KEYS", " k1, ,k2 ")
    monkeypatch.setenv("DS_SERVICES", "a.b:C, d.e:F")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://app:s3cret@db:5432/sessions"
    assert Settings(database_url="sqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"
    assert settings.api_key_list() == ["k1", "k2"]
    assert settings.service_paths() == ["a.b:C", "d.e:F"]


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_DATABASE_URL", "postgresql://app:s3cret@db/sessions")
    monkeypatch.setenv("DS_BROKER_URL", "amqp://user:hunter2@mq:5672/")
    monkeypatch.setenv("DS_API_KEYS", "top-secret-key")
    shown = repr(Settings()) + str(Settings())
    for secret in ("s3cret", "hunter2", "top-secret-key"):
        assert secret not in shown
    assert "app:***@db" in shown


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("broker_url", "http://localhost", "must start with amqp://"),
        ("database_url", "just-a-name", "not a database URL"),
        ("api_port", 0, "greater than or equal to 1"),
        ("session_inactivity_timeout_s", 0, "greater than 0"),
    ],
)
def test_bad_settings_are_explained(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        Settings().api_port = 1  # type: ignore[misc]


def test_redact_url() -> None:
    assert redact_url("amqp://guest:guest@127.0.0.1:5672/") == "amqp://guest:***@127.0.0.1:5672/"
    assert redact_url("sqlite+aiosqlite:///./x.db") == "sqlite+aiosqlite:///./x.db"


def test_worker_throttles_are_wcfs_unless_ds_worker_settings_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert throttles(Settings()) == Throttles(
        max_concurrent_calls=16 * CPUS, max_concurrent_sessions=100 * CPUS
    )
    assert throttles(Settings()).instances == 116 * CPUS
    for name, value in [
        ("CALLS", "3"),
        ("SESSIONS", "4"),
        ("INSTANCES", "5"),
    ]:
        monkeypatch.setenv(f"DS_WORKER_MAX_CONCURRENT_{name}", value)
    monkeypatch.setenv("DS_WORKER_SESSIONS_PER_BATCH", "9")
    configured = throttles(Settings())
    assert (
        configured.max_concurrent_calls,
        configured.max_concurrent_sessions,
        configured.instances,
        configured.sessions_per_batch,
    ) == (3, 4, 5, 9)
    monkeypatch.setenv("DS_SINGLETON_LEASE_S", "2.5")
    assert Settings().singleton_lease_s == 2.5
