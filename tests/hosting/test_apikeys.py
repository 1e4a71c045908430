"""Credential formats and the key file's mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from durable_sessions.errors import ConfigurationError
from durable_sessions.hosting.apikeys import (
    digest,
    digest_matches,
    ensure_api_key,
    key_prefix,
    load_api_keys,
    new_key,
    new_session_token,
    token_session,
)
from durable_sessions.model.records import new_id
from durable_sessions.settings import Settings


def test_keys_and_tokens_are_told_apart_and_kept_as_digests() -> None:
    key, sid = new_key(), new_id()
    token = new_session_token(sid)
    assert key_prefix(key) == key[:16]
    assert key_prefix(token) is None
    assert token_session(token) == sid
    assert token_session(key) is None
    assert token_session("dst_short") is None
    assert digest_matches(key, digest(key))
    assert not digest_matches(key + "x", digest(key))
    assert len({new_key() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("mode", "who"),
    [(0o640, "its group"), (0o604, "other users"), (0o666, "its group and other users")],
)
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = tmp_path / "api-keys"
    ensure_api_key(path)
    os.chmod(path, mode)
    settings = Settings(api_keys_file=str(path))
    with pytest.raises(ConfigurationError, match=f"mode 0{mode:o}: {who} can read"):
        load_api_keys(settings)
    with pytest.raises(ConfigurationError, match=f"chmod 600 {path}"):
        ensure_api_key(path)
    os.chmod(path, 0o600)
    assert len(load_api_keys(settings)) == 1
