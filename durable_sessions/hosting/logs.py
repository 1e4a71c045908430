"""Readable logs for the processes: one line per event, with the process role and pid."""

from __future__ import annotations

import logging
import os
import sys

QUIET = ("aiormq", "aio_pika", "sqlalchemy.engine", "alembic", "uvicorn.access", "httpx")
QUIET_ALWAYS = ("aiosqlite", "httpcore")
"""Loggers kept at WARNING even at DEBUG: they print statement parameters (key digests,
session token digests) and HTTP exchanges."""
FORMAT = "%(asctime)s %(levelname)-7s %(role)s[%(process)d] %(name)s: %(message)s"


class _RoleFilter(logging.Filter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        return True


def setup_logging(role: str, level: str = "INFO") -> None:
    """Log to stderr as ``role[pid]``; quiet the chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(_RoleFilter(role))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for secretive in QUIET_ALWAYS:
        logging.getLogger(secretive).setLevel(logging.WARNING)
    logging.getLogger(__name__).debug("logging set up for %s (pid %d)", role, os.getpid())
