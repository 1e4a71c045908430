"""The protocol core stays pure: no XML library, no database, broker or web framework."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "durable_sessions.wsrm.lexical",
    "durable_sessions.wsrm.messages",
    "durable_sessions.wsrm.faults",
    "durable_sessions.wsrm.ranges",
    "durable_sessions.wsrm.settings",
    "durable_sessions.wsrm.actions",
    "durable_sessions.wsrm.source",
    "durable_sessions.wsrm.destination",
    "durable_sessions.wsrm.snapshot",
    "durable_sessions.wsrm.errors",
]
ADAPTERS = ["lxml", "sqlalchemy", "aio_pika", "aiormq", "fastapi", "starlette"]


def test_pure_modules_import_no_adapter_library() -> None:
    probe = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in PURE)
        + f"print(sorted(name for name in {ADAPTERS!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_codec_is_where_lxml_comes_in() -> None:
    probe = "import sys, durable_sessions.wsrm.xml.codec; print('lxml' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"
