"""The architecture, as folder rules: which wing may import which, who may use which library,
and no import loops.

Every file of ``durable_sessions/``, ``api/`` and ``workers/`` belongs to a part by where it
lies (the longest matching path wins); a file no part takes fails the test, so a new wing must
be placed here. Imports are read from the code (every ``import``, also inside functions and
under ``TYPE_CHECKING``), resolved to files, and checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("durable_sessions", "api", "workers")

PARTS: dict[str, tuple[str, ...]] = {
    "base": (
        "durable_sessions/errors.py",
        "durable_sessions/flow.py",
        "durable_sessions/settings.py",
    ),
    "face": ("durable_sessions/__init__.py",),
    "entry": ("durable_sessions/__main__.py",),
    "wsrm": ("durable_sessions/wsrm/",),
    "wsrm/xml": ("durable_sessions/wsrm/xml/",),
    "model": ("durable_sessions/model/",),
    "ports": ("durable_sessions/store/base.py", "durable_sessions/broker/base.py"),
    "twins": (
        "durable_sessions/store/memory.py",
        "durable_sessions/store/memory_listeners.py",
        "durable_sessions/store/memory_workers.py",
        "durable_sessions/broker/memory.py",
    ),
    "families": ("durable_sessions/store/__init__.py", "durable_sessions/broker/__init__.py"),
    "store/sql": ("durable_sessions/store/sql/",),
    "broker/rabbitmq": ("durable_sessions/broker/rabbitmq/",),
    "engine": ("durable_sessions/engine/",),
    "reliable": ("durable_sessions/reliable/",),
    "hosting": ("durable_sessions/hosting/",),
    "remote": ("durable_sessions/remote/",),
    "examples": ("durable_sessions/examples/",),
    "cli": ("durable_sessions/cli/",),
    "api": ("api/",),
    "workers": ("workers/",),
}
"""Where each part of the house lies."""

_LIBRARY = {"base", "face", "wsrm", "wsrm/xml", "model", "ports", "twins", "store/sql"}
_LIBRARY |= {"broker/rabbitmq", "families", "engine", "reliable", "hosting", "remote"}

MAY_IMPORT: dict[str, set[str]] = {
    "base": set(),
    "wsrm": {"base"},
    "wsrm/xml": {"base", "wsrm"},
    "model": {"base", "wsrm"},
    "ports": {"base", "model"},
    "twins": {"base", "model", "ports"},
    "families": {"base", "model", "ports", "twins", "store/sql", "broker/rabbitmq"},
    "store/sql": {"base", "wsrm", "model", "ports"},
    "broker/rabbitmq": {"base", "model", "ports"},
    "engine": {"base", "model", "ports"},
    "reliable": {"base", "wsrm", "wsrm/xml", "model", "ports", "engine"},
    "remote": {"base", "model"},
    "hosting": _LIBRARY - {"face"},
    "face": _LIBRARY - {"face"},
    "examples": {"face"},
    "api": _LIBRARY,
    "workers": _LIBRARY,
    "cli": _LIBRARY | {"api", "workers"},
    "entry": {"cli"},
}
"""What each part may import besides itself: the wings, one way down.

The model knows nothing above it (the WS-RM protocol's values, which sequences store, lie below
it); the engine works through the ports and never names an adapter or a twin; only the
composition roots (cli, api, workers) and the package's face reach the hosting wing."""

LIBRARIES: dict[str, set[str]] = {
    "sqlalchemy": {"store/sql"},
    "alembic": {"store/sql"},
    "asyncpg": {"store/sql"},
    "aiosqlite": {"store/sql"},
    "aio_pika": {"broker/rabbitmq"},
    "aiormq": {"broker/rabbitmq"},
    "pamqp": {"broker/rabbitmq"},
    "lxml": {"wsrm/xml"},
    "fastapi": {"api"},
    "starlette": {"api"},
    "uvicorn": {"api"},
    "prometheus_client": {"hosting"},
    "httpx": {"reliable", "remote", "cli"},
    "typer": {"cli"},
}
"""Which parts alone may import each adapter library."""

MAX_LINES = 600


def source_files() -> list[Path]:
    """Every Python file of the package and the composition roots."""
    return sorted(p for root in SOURCES for p in (ROOT / root).rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def part_of(path: Path) -> str | None:
    """The part whose longest path holds ``path``."""
    name = relative(path)
    best: tuple[int, str] | None = None
    for part, places in PARTS.items():
        for place in places:
            if (name == place or (place.endswith("/") and name.startswith(place))) and (
                best is None or len(place) > best[0]
            ):
                best = (len(place), part)
    return None if best is None else best[1]


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path) -> list[str]:
    return list(path.relative_to(ROOT).parts[:-1])


@cache
def imports(path: Path) -> tuple[frozenset[str], frozenset[Path]]:
    """The top-level names of the libraries ``path`` imports, and the source files it imports."""
    libraries: set[str] = set()
    files: set[Path] = set()

    def add(module: str, names: list[str]) -> None:
        top = module.split(".", 1)[0]
        if top not in SOURCES:
            libraries.add(top)
            return
        found = [_module_file(f"{module}.{n}") for n in names]
        files.update(f for f in found if f is not None)
        if any(f is None for f in found) or not names:
            target = _module_file(module)
            if target is not None:
                files.add(target)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, [])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path)[: len(_package_of(path)) - node.level + 1]
                module = ".".join([*package, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            add(module, [alias.name for alias in node.names])
    files.discard(path)
    return frozenset(libraries), frozenset(files)


FILES = source_files()


def _ids(path: Path) -> str:
    return relative(path)


def test_every_file_belongs_to_a_part() -> None:
    unplaced = [relative(p) for p in FILES if part_of(p) is None]
    assert not unplaced, f"place these files in PARTS: {unplaced}"


def test_every_part_lies_somewhere() -> None:
    empty = [part for part in PARTS if not any(part_of(p) == part for p in FILES)]
    assert not empty, f"parts without files: {empty}"


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_imports_run_down_the_wings(path: Path) -> None:
    part = part_of(path)
    assert part is not None
    allowed = MAY_IMPORT[part] | {part}
    wrong = {
        f"{relative(target)} ({part_of(target)})"
        for target in imports(path)[1]
        if part_of(target) not in allowed
    }
    assert not wrong, f"{relative(path)} ({part}) may not import {sorted(wrong)}"


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_adapter_libraries_stay_in_their_adapters(path: Path) -> None:
    part = part_of(path)
    wrong = {lib for lib in imports(path)[0] if lib in LIBRARIES and part not in LIBRARIES[lib]}
    assert not wrong, (
        f"{relative(path)} ({part}) imports {sorted(wrong)}, which only "
        f"{ {lib: sorted(LIBRARIES[lib]) for lib in sorted(wrong)} } may use"
    )


def _cycles() -> Iterator[list[Path]]:
    """The import loops between files (strongly connected components with more than one file)."""
    graph = {p: sorted(imports(p)[1]) for p in FILES}
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    counter = 0

    def visit(node: Path) -> Iterator[list[Path]]:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, []):
            if target not in index:
                yield from visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                yield sorted(component)

    for node in graph:
        if node not in index:
            yield from visit(node)


def _loop_through(component: list[Path]) -> list[str]:
    """One import loop inside ``component``, as file names, for the failure message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        following = next(t for t in sorted(imports(path[-1])[1]) if t in members)
        if following in seen:
            loop = [*path[path.index(following) :], following]
            return [relative(p) for p in loop]
        path.append(following)
        seen.add(following)


def test_no_files_import_each_other_in_a_loop() -> None:
    loops = [" -> ".join(_loop_through(component)) for component in _cycles()]
    assert not loops, "import loops: " + "; ".join(loops)


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_every_module_says_what_it_is_and_stays_small(path: Path) -> None:
    text = path.read_text()
    assert ast.get_docstring(ast.parse(text)), f"{relative(path)} has no docstring"
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{relative(path)} has {lines} lines: split it (at most {MAX_LINES})"
