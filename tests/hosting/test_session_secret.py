"""The server secret: from DS_SESSION_SECRET, or a 0600 file generated once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from durable_sessions.errors import ConfigurationError
from durable_sessions.hosting.session_secret import load_session_secret
from durable_sessions.settings import Settings


def test_a_configured_secret_wins(tmp_path: Path) -> None:
    settings = Settings(
        session_secret="s3cret",  # type: ignore[arg-type]
        session_secret_file=str(tmp_path / "secret"),
    )
    assert load_session_secret(settings) == b"s3cret"
    assert not (tmp_path / "secret").exists()


def test_the_secret_file_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "ds" / "secret"
    settings = Settings(session_secret_file=str(path))
    first = load_session_secret(settings)
    assert len(first) >= 43
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_session_secret(settings) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def test_a_readable_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("abc\n")
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match=r"session secret file .* other users"):
        load_session_secret(Settings(session_secret_file=str(path)))
