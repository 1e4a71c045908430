"""Every Python example of the README and of ``docs/`` runs, so none can drift from the code.

A page's ```` ```python ```` blocks run in order in one namespace, as a reader would paste them
(top-level ``await`` allowed). A page whose examples need something running first (a worker,
a control plane) names it in :data:`SETUPS`; each ``print(...)`` must print what its comment
says.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from durable_sessions.broker.memory import MemoryNode
from durable_sessions.broker.rabbitmq import RabbitBroker
from durable_sessions.engine.runtime import Runtime
from durable_sessions.examples.calculator import Calculator, CalculatorService
from durable_sessions.model.endpoints import Endpoint
from durable_sessions.model.services import service_of
from durable_sessions.reliable.amqp import AmqpReliableDestination
from durable_sessions.reliable.wakeups import DestinationWakeups
from durable_sessions.settings import Settings
from durable_sessions.store.memory import MemoryStore
from durable_sessions.store.sql import SqlStore
from durable_sessions.wsrm.settings import ReliableSessionSettings
from tests.services import BROKER_URL, require
from tests.stacks import delete_topology

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
PRINTED = re.compile(r"^\s*print\(.*\)\s*#\s*(.*)$")
KEY = "docs-example-key"
_AST_WITH_AWAIT = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT

Namespace = dict[str, Any]


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The page's Python blocks, each with the line its code starts on."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


async def run_block(page: Path, line: int, code: str, namespace: Namespace) -> None:
    """Run one block; check that each ``print(...)  # text`` printed something ``text`` holds."""
    printed: list[str] = []
    namespace["print"] = lambda *values: printed.append(" ".join(map(str, values)))
    source = "\n" * (line - 1) + code
    compiled = compile(
        source, f"{page.name}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    outcome = eval(compiled, namespace)
    if asyncio.iscoroutine(outcome):
        await outcome
    said = [m.group(1) for m in map(PRINTED.match, code.splitlines()) if m]
    assert len(printed) == len(said), f"{page.name}:{line}: printed {printed}, comments {said}"
    for value, comment in zip(printed, said, strict=True):
        assert value in comment, (
            f"{page.name}:{line}: printed {value!r}, the comment says {comment!r}"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def readme(request: pytest.FixtureRequest) -> AsyncIterator[Namespace]:
    """A worker on SQLite and RabbitMQ, and the settings ``connect_client()`` reads."""
    require("RabbitMQ", BROKER_URL, 5672)
    url = request.getfixturevalue("sqlite_url")
    monkeypatch = request.getfixturevalue("monkeypatch")
    spec = service_of(CalculatorService)
    endpoint = Endpoint.for_service(spec, name=f"calculator-{uuid.uuid4().hex[:8]}")
    for name, value in {
        "DS_DATABASE_URL": url,
        "DS_BROKER_URL": BROKER_URL,
        "DS_SERVICES": f"{spec.path}@{endpoint.name}",
    }.items():
        monkeypatch.setenv(name, value)
    store, broker = SqlStore.from_url(url), await RabbitBroker.connect(BROKER_URL)
    try:
        async with Runtime(store, broker, [(endpoint, spec)], sweep_interval_s=0.1):
            yield {}
    finally:
        await broker.close()
        await store.close()
        await delete_topology(endpoint.topology)


@contextlib.asynccontextmanager
async def reliable_sessions(request: pytest.FixtureRequest) -> AsyncIterator[Namespace]:
    """The control plane on a port of its own, its worker, and a WS-RM destination over AMQP,
    all on the memory twins; a migrated ``client.db`` in the test's folder."""
    tmp_path: Path = request.getfixturevalue("tmp_path")
    request.getfixturevalue("monkeypatch").chdir(tmp_path)
    shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "client.db")
    spec = service_of(CalculatorService)
    endpoint = Endpoint.for_service(spec)
    store, node = MemoryStore(), MemoryNode()
    settings = Settings(api_keys=KEY, api_keys_file=str(tmp_path / "keys"))  # type: ignore[arg-type]
    runtime = Runtime(
        store,
        node.connect(),
        [(endpoint, spec)],
        sweep_interval_s=0.05,
        relay_poll_interval_s=0.05,
        wakeups=DestinationWakeups(store, {endpoint.name: ReliableSessionSettings()}),
    )
    app = create_app(settings, endpoints=[endpoint], store=store, broker=node.connect())
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    async with runtime:
        serving = asyncio.create_task(server.serve())
        destination = AmqpReliableDestination(store, node.connect(), endpoint, relay=runtime.relay)
        amqp = asyncio.create_task(destination.run())
        try:
            async with asyncio.timeout(10):
                while not server.started:  # noqa: ASYNC110 - uvicorn has no event to wait on
                    await asyncio.sleep(0.02)
            yield {
                "api_url": f"http://127.0.0.1:{port}",
                "key": KEY,
                "Calculator": Calculator,
                "broker": node.connect(),
            }
        finally:
            await destination.stop()
            await amqp
            server.should_exit = True
            await serving


SETUPS: dict[
    str, Callable[[pytest.FixtureRequest], contextlib.AbstractAsyncContextManager[Namespace]]
] = {
    "README.md": readme,
    "reliable-sessions.md": reliable_sessions,
}
"""What each page's examples need running, by page name; a page not named needs nothing."""

EXAMPLES = [page for page in PAGES if python_blocks(page)]
NEEDS_RABBITMQ = {"README.md"}


def test_the_pages_have_examples_and_every_setup_has_a_page() -> None:
    assert {"README.md", "testing.md", "reliable-sessions.md"} <= {p.name for p in EXAMPLES}
    assert set(SETUPS) <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("page", EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_import_from_the_package_or_one_level_below(page: Path) -> None:
    deep = [
        f"{page.name}:{line}: {node.module}"
        for line, code in python_blocks(page)
        for node in ast.walk(compile(code, page.name, "exec", flags=_AST_WITH_AWAIT))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("durable_sessions.")
        and node.module.count(".") > 1
    ]
    assert not deep, f"import these from durable_sessions or one level below: {deep}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "page",
    [
        pytest.param(
            page,
            id=page.relative_to(ROOT).as_posix(),
            marks=[pytest.mark.rabbitmq] if page.name in NEEDS_RABBITMQ else [],
        )
        for page in EXAMPLES
    ],
)
async def test_the_examples_of_a_page_run(page: Path, request: pytest.FixtureRequest) -> None:
    setup = SETUPS.get(page.name)
    async with contextlib.AsyncExitStack() as stack:
        namespace: Namespace = {"__name__": f"example_{page.stem.replace('-', '_')}"}
        if setup is not None:
            namespace.update(await stack.enter_async_context(setup(request)))
        for line, code in python_blocks(page):
            await run_block(page, line, code, namespace)
