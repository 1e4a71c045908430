"""The worker process: settings in, runtime out, stopped cleanly by SIGTERM or SIGINT.

``python -m workers [--service module:Service ...] [--endpoint NAME] [--binding BINDING]`` and
``durable-sessions worker`` both run :func:`run`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from durable_sessions.engine.runtime import Runtime
from durable_sessions.errors import DurableSessionsError
from durable_sessions.hosting.composition import (
    build_store,
    connect_broker,
    reliable_options,
    served_endpoints,
    throttles,
)
from durable_sessions.hosting.logs import setup_logging
from durable_sessions.hosting.metrics import Metrics
from durable_sessions.model.endpoints import Binding
from durable_sessions.reliable.amqp import AmqpReliableDestination, publish_envelope
from durable_sessions.reliable.wakeups import DestinationWakeups
from durable_sessions.settings import Settings, redact_url

log = logging.getLogger("durable_sessions.worker")


async def serve(
    settings: Settings,
    service_paths: Sequence[str] = (),
    endpoint: str | None = None,
    binding: Binding | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; the batch in progress finishes, nothing else is acked."""
    served = served_endpoints(settings, service_paths, endpoint, binding)
    rm_options = reliable_options(settings, [e.name for e, _ in served])
    store = build_store(settings)
    try:
        await store.ping()
        broker = await connect_broker(settings)
        try:
            wakeups = DestinationWakeups(
                store,
                {name: o.settings for name, o in rm_options.items()},
                send=functools.partial(publish_envelope, broker),
            )
            runtime = Runtime(
                store,
                broker,
                served,
                throttles=throttles(settings),
                sweep_interval_s=settings.sweep_interval_s,
                wakeups=wakeups,
                relay_poll_interval_s=settings.outbox_poll_interval_s,
                relay_lease_s=settings.outbox_lease_s,
                singleton_lease_s=settings.singleton_lease_s,
                on_batch=Metrics().observe_batch,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await runtime.start()
            # What start-up made lives as long as the process: full collections skip it, so
            # they take a millisecond instead of tens (a pause every delivery would wait out).
            gc.freeze()
            destinations = [
                AmqpReliableDestination(
                    store,
                    broker,
                    endpoint_,
                    options=rm_options[endpoint_.name],
                    relay=runtime.relay,
                )
                for endpoint_, _ in served
                if endpoint_.binding.sessionful
            ]
            reliable = [asyncio.create_task(d.run(), name=f"wsrm-{d.queue}") for d in destinations]
            for endpoint_, service in served:
                takes = [
                    kind
                    for kind, taken in (
                        ("sessions", endpoint_.accepts_sessions),
                        ("datagrams", endpoint_.accepts_datagrams),
                    )
                    if taken
                ]
                log.info(
                    "serving %s on endpoint %r (%s binding: %s) from %s, broker %s",
                    service.path,
                    endpoint_.name,
                    endpoint_.binding,
                    " and ".join(takes),
                    redact_url(settings.database_url),
                    redact_url(settings.broker_url),
                )
            waiting = asyncio.create_task(runtime.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({waiting, stopping, *reliable}, return_when=asyncio.FIRST_COMPLETED)
            log.info("stopping: finishing the batch in progress")
            for destination in destinations:
                await destination.stop()
            ended = await asyncio.gather(*reliable, return_exceptions=True)
            await runtime.stop()
            stopping.cancel()
            if waiting.done():
                waiting.result()
            else:
                waiting.cancel()
            for outcome in ended:
                if isinstance(outcome, Exception):
                    raise outcome
        finally:
            await broker.close()
    finally:
        await store.close()
    log.info("stopped")


def run(
    settings: Settings,
    service_paths: Sequence[str] = (),
    endpoint: str | None = None,
    binding: Binding | None = None,
) -> None:
    """Set up logging, then :func:`serve` until SIGTERM or SIGINT."""
    setup_logging("worker", settings.log_level)
    asyncio.run(serve(settings, service_paths, endpoint, binding))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m workers``: a known error prints one line instead of a traceback."""
    parser = argparse.ArgumentParser(
        prog="python -m workers",
        description="Consume an endpoint's queues and apply its messages, until SIGTERM or Ctrl-C.",
    )
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="MODULE:SERVICE",
        help="service to serve (repeatable; default: DS_SERVICES)",
    )
    parser.add_argument("--endpoint", help="endpoint name (default: from the contract name)")
    parser.add_argument(
        "--binding",
        choices=[binding.value for binding in Binding],
        help="the endpoint's binding (default: datagram for a NOT_ALLOWED contract or a "
        "Concurrency.MULTIPLE service, else queued-session)",
    )
    for flag, wcf, default in (
        ("calls", "MaxConcurrentCalls", "16 per CPU"),
        ("sessions", "MaxConcurrentSessions", "100 per CPU"),
        ("instances", "MaxConcurrentInstances", "calls plus sessions"),
    ):
        parser.add_argument(
            f"--max-concurrent-{flag}",
            type=_positive,
            metavar="N",
            help=f"WCF's {wcf} per worker (default: DS_WORKER_MAX_CONCURRENT_{flag.upper()}, "
            f"else {default})",
        )
    parser.add_argument(
        "--reliable-session",
        action="append",
        default=[],
        metavar="ENDPOINT:NAME=VALUE,...",
        help="an endpoint's reliable-session settings, with WCF's names (repeatable; added to "
        "DS_RELIABLE_SESSIONS)",
    )
    arguments = parser.parse_args(argv)
    throttles = {
        f"worker_max_concurrent_{flag}": value
        for flag in ("calls", "sessions", "instances")
        if (value := getattr(arguments, f"max_concurrent_{flag}")) is not None
    }
    try:
        binding = Binding(arguments.binding) if arguments.binding else None
        settings = Settings(**throttles).with_reliable_sessions(arguments.reliable_session)
        run(settings, arguments.service, arguments.endpoint, binding)
    except DurableSessionsError as error:
        sys.exit(f"error: {error}")
