"""Child processes for ``up`` and ``demo``: start, restart when they die, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

log = logging.getLogger("durable_sessions.up")

STOP_GRACE_S = 15.0
RESTART_DELAY_S = 1.0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies (Linux), never orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process."""

    name: str
    args: Sequence[str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The pid of the running process."""
        return None if self.process is None else self.process.pid


class Supervisor:
    """Runs ``python -m durable_sessions <args>`` children and keeps them running."""

    def __init__(self, env: Mapping[str, str], output: IO[str] | None = None) -> None:
        self.env = {**os.environ, **env}
        self.output = output
        self.children: list[Child] = []
        self._stopping = False

    async def start(self, name: str, *args: str) -> Child:
        """Start a child and watch it."""
        child = Child(name, args)
        self.children.append(child)
        await self._spawn(child)
        return child

    async def _spawn(self, child: Child) -> None:
        out = self.output if self.output is not None else None
        child.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "durable_sessions",
            *child.args,
            env=self.env,
            stdout=out,
            stderr=out,
            preexec_fn=_die_with_parent,
        )
        child.watcher = asyncio.create_task(self._watch(child), name=f"watch-{child.name}")

    async def _watch(self, child: Child) -> None:
        assert child.process is not None
        code = await child.process.wait()
        if self._stopping:
            return
        log.warning("%s (pid %s) exited with %s; restarting it", child.name, child.pid, code)
        child.restarts += 1
        await asyncio.sleep(RESTART_DELAY_S)
        if not self._stopping:
            await self._spawn(child)

    def kill(self, child: Child) -> None:
        """``kill -9`` a child, as a crash would; the supervisor restarts it."""
        if child.process is not None and child.process.returncode is None:
            child.process.send_signal(signal.SIGKILL)

    async def wait_restarted(self, child: Child, restarts: int, timeout_s: float = 30.0) -> None:
        """Wait until ``child`` has been restarted ``restarts`` times."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (
            child.restarts < restarts
            or child.process is None
            or child.process.returncode is not None
        ):
            if loop.time() > deadline:
                raise TimeoutError(f"{child.name} was not restarted")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM every child, wait for them, SIGKILL the ones that do not stop in time."""
        self._stopping = True
        running = [c.process for c in self.children if c.process and c.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    log.warning("pid %s did not stop in %ss: killing it", process.pid, STOP_GRACE_S)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))
        for child in self.children:
            if child.watcher is not None:
                child.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.watcher

    def failed_early(self) -> Child | None:
        """A child that keeps dying right after it starts (say, bad configuration)."""
        return next((c for c in self.children if c.restarts >= 5), None)
