"""The control plane process: ``create_app`` served by uvicorn until SIGTERM or Ctrl-C.

``durable-sessions api`` runs :func:`run`.
"""

from __future__ import annotations

import uvicorn

from api.app import create_app
from durable_sessions.hosting.logs import setup_logging
from durable_sessions.hosting.tls import server_tls
from durable_sessions.settings import Settings


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Set up logging, then serve the control plane on ``host``:``port`` (else the settings').

    With ``DS_TLS_CERT`` and ``DS_TLS_KEY`` it serves HTTPS only; a bad pair stops it first.
    """
    tls = server_tls(settings)
    setup_logging("api", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )
