"""Debian's Chromium under Playwright, for the dashboard's tests (never a downloaded browser).

Locally a missing Chromium or Playwright skips; under ``CI=true`` it fails, as for the other
real services (:mod:`tests.services`). ``make test`` installs Chromium when it is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.services import in_ci

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]
    from typing import Any as Browser  # type: ignore[assignment]
    from typing import Any as Page  # type: ignore[assignment]

    expect = None  # type: ignore[assignment]

__all__ = ["ARGS", "CHROMIUM", "Browser", "Page", "chromium", "expect"]


def _missing(what: str) -> None:
    message = f"{what} (run `make test`, which installs Chromium, or apt-get install chromium)"
    if in_ci():
        pytest.fail(f"{message}; CI=true: browser tests are required", pytrace=False)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium from ``/usr/bin/chromium``, closed afterwards."""
    if sync_playwright is None:
        _missing("the playwright package is not installed")
    if shutil.which(CHROMIUM) is None:
        _missing(f"{CHROMIUM} is missing")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
