"""The typer application and its commands for running and administering the service."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Annotated

import typer

from durable_sessions.model.endpoints import Binding
from durable_sessions.settings import Settings, redact_url

app = typer.Typer(
    name="durable-sessions",
    help="Durable, ordered, exactly-once sessions on RabbitMQ and SQL.",
    no_args_is_help=True,
    add_completion=False,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Database to use (default: DS_DATABASE_URL, else a SQLite file here).",
        show_default=False,
    ),
]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"durable-sessions {version('durable-sessions')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Durable, ordered, exactly-once sessions on RabbitMQ and SQL."""


MaxConcurrentCalls = Annotated[
    int | None,
    typer.Option(
        "--max-concurrent-calls",
        min=1,
        help="Handler calls at once per worker, WCF's MaxConcurrentCalls (default: "
        "DS_WORKER_MAX_CONCURRENT_CALLS, else 16 per CPU).",
        show_default=False,
    ),
]
MaxConcurrentSessions = Annotated[
    int | None,
    typer.Option(
        "--max-concurrent-sessions",
        min=1,
        help="Sessions served at once per worker, WCF's MaxConcurrentSessions (default: "
        "DS_WORKER_MAX_CONCURRENT_SESSIONS, else 100 per CPU).",
        show_default=False,
    ),
]
MaxConcurrentInstances = Annotated[
    int | None,
    typer.Option(
        "--max-concurrent-instances",
        min=1,
        help="Service instances alive at once per worker, WCF's MaxConcurrentInstances "
        "(default: DS_WORKER_MAX_CONCURRENT_INSTANCES, else calls plus sessions).",
        show_default=False,
    ),
]


def throttle_overrides(
    calls: int | None, sessions: int | None, instances: int | None
) -> dict[str, int]:
    """The throttle flags given, as ``Settings`` fields."""
    given = {
        "worker_max_concurrent_calls": calls,
        "worker_max_concurrent_sessions": sessions,
        "worker_max_concurrent_instances": instances,
    }
    return {name: value for name, value in given.items() if value is not None}


def load_settings(
    database_url: str | None = None, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Settings from the environment, with command-line overrides."""
    given = dict(overrides or {})
    if database_url:
        given["database_url"] = database_url
    return Settings(**given)  # type: ignore[arg-type]


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema to the newest revision."""
    from durable_sessions.store.sql import migrate as migrations

    settings = load_settings(database_url)
    url = settings.database_url
    head = migrations.head_revision()
    before = asyncio.run(migrations.current_revision(url))
    if before == head:
        typer.echo(f"{redact_url(url)} is already at revision {head}")
        return
    typer.echo(f"migrating {redact_url(url)} from {before or 'an empty database'} to {head} ...")
    asyncio.run(migrations.upgrade(url))
    typer.echo(f"done: {redact_url(url)} is at revision {head}")


@app.command()
def worker(
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            help="module:Service to serve (repeatable; default: DS_SERVICES).",
            show_default=False,
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="Endpoint name (default: from the contract name)."),
    ] = None,
    binding: Annotated[
        Binding | None,
        typer.Option(
            "--binding",
            help="The endpoint's binding (default: datagram for a NOT_ALLOWED contract or a "
            "Concurrency.MULTIPLE service, else queued-session).",
            show_default=False,
        ),
    ] = None,
    max_concurrent_calls: MaxConcurrentCalls = None,
    max_concurrent_sessions: MaxConcurrentSessions = None,
    max_concurrent_instances: MaxConcurrentInstances = None,
) -> None:
    """Consume an endpoint's queues and apply its messages, until SIGTERM or Ctrl-C."""
    from workers.main import run

    throttles = throttle_overrides(
        max_concurrent_calls, max_concurrent_sessions, max_concurrent_instances
    )
    run(load_settings(overrides=throttles), service or [], endpoint, binding)


@app.command()
def api(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on.")] = None,
) -> None:
    """Run the control plane (REST v1) until SIGTERM or Ctrl-C."""
    from api.main import run

    run(load_settings(), host, port)


@app.command()
def up(
    port: Annotated[int | None, typer.Option("--port", help="Control plane port.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=32, help="Worker processes.")] = 2,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="module:Service to serve (default: DS_SERVICES)."),
    ] = None,
    max_concurrent_calls: MaxConcurrentCalls = None,
    max_concurrent_sessions: MaxConcurrentSessions = None,
    max_concurrent_instances: MaxConcurrentInstances = None,
) -> None:
    """Migrate, then run the control plane and workers on this machine until Ctrl-C."""
    from durable_sessions.cli.up import run_up
    from durable_sessions.hosting.logs import setup_logging

    throttles = throttle_overrides(
        max_concurrent_calls, max_concurrent_sessions, max_concurrent_instances
    )
    settings = load_settings(overrides=throttles)
    setup_logging("up", settings.log_level)
    asyncio.run(run_up(settings, port or settings.api_port, workers, service or [], throttles))


@app.command()
def demo(
    workers: Annotated[int, typer.Option("--workers", min=1, max=8, help="Worker processes.")] = 2,
) -> None:
    """A guided calculator session over REST, with a worker killed mid-way and restarted."""
    from durable_sessions.cli.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(load_settings(), workers)))


def _add_rest_commands() -> None:
    from durable_sessions.cli.rest import dead_letters_app, endpoints_app, keys_app, sessions_app

    app.add_typer(sessions_app, name="sessions")
    app.add_typer(dead_letters_app, name="dead-letters")
    app.add_typer(endpoints_app, name="endpoints")
    app.add_typer(keys_app, name="keys")


_add_rest_commands()
