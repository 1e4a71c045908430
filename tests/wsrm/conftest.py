"""Fixtures for the WS-RM tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wsrm.schemas import shared_dir


@pytest.fixture(scope="session")
def samples() -> Path:
    """The folder of sample WS-RM wire messages."""
    return shared_dir() / "wsrm-messages"
