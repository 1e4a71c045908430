"""The ``durable-sessions`` command line."""

from __future__ import annotations

import sys

import typer

from durable_sessions.cli.app import app
from durable_sessions.errors import DurableSessionsError


def main(argv: list[str] | None = None) -> None:
    """Run the command line; known errors print one line instead of a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except DurableSessionsError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click's usage errors carry their own exit code
        exit_code = getattr(e, "exit_code", None)
        if exit_code is None:
            raise
        if hasattr(e, "show"):
            e.show()
        sys.exit(exit_code)


__all__ = ["app", "main"]
