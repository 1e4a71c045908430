"""Settings from DS_* variables, secrets kept out of logs, and record invariants."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from durable_sessions.lifecycle import SessionState
from durable_sessions.records import SessionRecord, new_id
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


def test_ids_are_uuid7_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 50
    early = new_id()
    time.sleep(0.002)
    assert early < new_id()


def test_ids_made_in_one_millisecond_still_sort_in_the_order_made() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


def test_session_deadline_is_inactivity_or_ttl_whichever_first() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    idle = SessionRecord(id="s", contract="C", endpoint="e", created_at=t0)
    assert idle.expires_at == t0 + timedelta(seconds=600)
    active = SessionRecord(
        id="s", contract="C", endpoint="e", created_at=t0, last_activity_at=t0 + timedelta(hours=1)
    )
    assert active.expires_at == t0 + timedelta(hours=1, seconds=600)
    capped = SessionRecord(
        id="s",
        contract="C",
        endpoint="e",
        created_at=t0,
        ttl_s=3600,
        last_activity_at=t0 + timedelta(minutes=59),
    )
    assert capped.expires_at == t0 + timedelta(hours=1)
    closed = SessionRecord(
        id="s", contract="C", endpoint="e", created_at=t0, state=SessionState.CLOSED
    )
    assert closed.expires_at is None
