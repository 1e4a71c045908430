"""Real processes for the end-to-end tests: workers, APIs, senders, their logs, kills and stops.

Every process runs from the repository root with the ``DS_*`` environment of its run and writes
its output to a log file of its own; a test that fails shows the end of every log. Nothing here
sleeps for a fixed time: waits poll a condition until a deadline.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.e2e.journal import SERVICE_PATH

REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.05
LOG_TAIL_LINES = 40


class Proc:
    """One child process; it can be started again after it stopped or was killed."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<{self.name} pid {self.pid} {state}>"

    def start(self) -> Proc:
        """Start the process (again), appending its output to its log."""
        if self.running:
            raise RuntimeError(f"{self.name} is running already")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.name} start {self.starts}: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int | None:
        """The pid of the current (or last) run."""
        return None if self._popen is None else self._popen.pid

    @property
    def running(self) -> bool:
        """True while the process runs."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the last run, None while it runs (negative: killed by a signal)."""
        return None if self._popen is None else self._popen.poll()

    def kill(self) -> None:
        """``kill -9``, then reap the process."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGKILL)
        self._popen.wait(timeout=10)

    async def wait(self, within_s: float) -> int:
        """The exit status once the process exits; TimeoutError if it runs on after ``within_s``."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (code := self._popen.poll()) is None:
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name} still runs after {within_s:g} s")
            await asyncio.sleep(POLL_S)
        return code

    async def stop(self, within_s: float = 30.0) -> int:
        """SIGTERM, and the exit status; a process that does not stop in time is killed."""
        if self._popen is None or not self.running:
            raise RuntimeError(f"{self.name} is not running")
        self._popen.send_signal(signal.SIGTERM)
        try:
            return await self.wait(within_s)
        except TimeoutError:
            self.kill()
            raise

    def log(self) -> str:
        """Everything the process wrote, over all its runs."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def count(self, text: str) -> int:
        """How many lines of the log contain ``text``."""
        return sum(text in line for line in self.log().splitlines())

    async def logged(self, text: str, *, times: int = 1, within_s: float = 30.0) -> None:
        """Wait until ``text`` appears on ``times`` lines of the log; fail early if it exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self.count(text) < times:
            if not self.running:
                raise AssertionError(f"{self.name} exited ({self.returncode}) before {text!r}")
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name} did not log {text!r} within {within_s:g} s")
            await asyncio.sleep(POLL_S)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of the log."""
        return "\n".join(self.log().splitlines()[-lines:])


class Fleet:
    """The processes of one run: workers of one endpoint and senders, sharing an environment."""

    def __init__(self, directory: Path, env: Mapping[str, str], endpoint: str) -> None:
        self.directory = directory
        self.env = dict(env)
        self.endpoint = endpoint
        self.procs: list[Proc] = []

    def _spawn(self, name: str, argv: list[str], **env: str) -> Proc:
        proc = Proc(name, argv, {**self.env, **env}, self.directory / f"{name}.log")
        self.procs.append(proc)
        return proc.start()

    def worker(self) -> Proc:
        """Start one more worker process serving the endpoint."""
        index = sum(p.name.startswith("worker") for p in self.procs) + 1
        argv = [sys.executable, "-m", "workers", "--service", SERVICE_PATH]
        return self._spawn(f"worker-{index}", [*argv, "--endpoint", self.endpoint])

    def api(self, port: int, key: str) -> Proc:
        """Start the control plane (``durable-sessions api``) serving the endpoint on ``port``."""
        argv = [sys.executable, "-m", "durable_sessions", "api", "--port", str(port)]
        return self._spawn(
            "api", argv, DS_SERVICES=f"{SERVICE_PATH}@{self.endpoint}", DS_API_KEYS=key
        )

    def reliable_source(self, *options: str) -> Proc:
        """Start a WS-RM source process (see :mod:`tests.e2e.reliable_source`)."""
        index = sum(p.name.startswith("source") for p in self.procs) + 1
        argv = [sys.executable, "-m", "tests.e2e.reliable_source", *options]
        return self._spawn(f"source-{index}", argv)

    @property
    def workers(self) -> list[Proc]:
        """The worker processes started so far."""
        return [p for p in self.procs if p.name.startswith("worker")]

    def sender(self, plan: Path, *options: str, **env: str) -> Proc:
        """Start a sender process with the plan at ``plan`` (see :mod:`tests.e2e.sender`).

        ``env`` overrides settings of this process only (``DS_OUTBOX_LEASE_S="30"``).
        """
        index = sum(p.name.startswith("sender") for p in self.procs) + 1
        argv = [sys.executable, "-m", "tests.e2e.sender", "--plan", str(plan), *options]
        return self._spawn(f"sender-{index}", argv, **env)

    async def serving(self, within_s: float = 30.0) -> None:
        """Wait until every running worker has said it serves (once per start)."""
        for proc in self.workers:
            if proc.running:
                await proc.logged("serving", times=proc.starts, within_s=within_s)

    async def stop_workers(self) -> list[int]:
        """Stop every running worker with SIGTERM; their exit statuses."""
        return [await p.stop() for p in self.workers if p.running]

    def kill_all(self) -> None:
        """Kill whatever still runs (clean-up after a failure)."""
        for proc in self.procs:
            proc.kill()

    def report(self) -> str:
        """The end of every process's log, for a failed test."""
        return "\n\n".join(f"===== {p!r} ({p.log_path}) =====\n{p.tail()}" for p in self.procs)


def child_env(**settings: str) -> dict[str, str]:
    """This process's environment without its ``DS_*`` settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env
