"""The import direction: the pure core imports no adapter (aio-pika, SQLAlchemy, FastAPI, lxml).

Every module of ``durable_sessions`` is core unless it is listed below as an adapter or a
composition root, so a new module is checked by default.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "durable_sessions"
ADAPTER_LIBRARIES = {
    "aio_pika",
    "aiormq",
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "fastapi",
    "starlette",
    "uvicorn",
    "lxml",
    "httpx",
    "prometheus_client",
}
ADAPTERS = {
    "sql": "SQLAlchemy store and migrations",
    "rabbitmq": "aio-pika transport",
    "cli": "command line (a composition root)",
    "__main__.py": "python -m durable_sessions (an entry point)",
    "hosting.py": "chooses the adapters from settings (a composition root)",
    "metrics.py": "Prometheus",
    "wsrm/codec.py": "the lxml envelope codec",
    "wsrm/_xml.py": "the lxml envelope codec",
    "wsrm/_encode.py": "the lxml envelope codec",
    "wsrm/_decode.py": "the lxml envelope codec",
    "wsrm/_decode_rm.py": "the lxml envelope codec",
    "wsrm/_call.py": "the lxml envelope codec",
    "reliable/http_client.py": "the httpx reliable-session client",
    "reliable/amqp.py": "the reliable-session binding over AMQP (the lxml envelope codec)",
}
ADAPTER_MODULES = {
    "durable_sessions.sql",
    "durable_sessions.rabbitmq",
    "durable_sessions.cli",
    "durable_sessions.hosting",
    "durable_sessions.metrics",
    "durable_sessions.wsrm.codec",
    "durable_sessions.wsrm._xml",
    "durable_sessions.wsrm._encode",
    "durable_sessions.wsrm._decode",
    "durable_sessions.wsrm._decode_rm",
    "durable_sessions.wsrm._call",
    "durable_sessions.reliable.http_client",
    "durable_sessions.reliable.amqp",
    "api",
    "workers",
}


def _is_adapter(path: Path) -> bool:
    relative = path.relative_to(PACKAGE).as_posix()
    return any(relative == a or relative.startswith(a + "/") for a in ADAPTERS)


CORE = sorted(p for p in PACKAGE.rglob("*.py") if not _is_adapter(p))


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_core_module_imports_no_adapter(path: Path) -> None:
    imported = imported_modules(path)
    libraries = {name.split(".")[0] for name in imported} & ADAPTER_LIBRARIES
    adapters = {
        name
        for name in imported
        if any(name == a or name.startswith(a + ".") for a in ADAPTER_MODULES)
    }
    assert not libraries, f"{path.name} imports adapter libraries {sorted(libraries)}"
    assert not adapters, f"{path.name} imports adapter modules {sorted(adapters)}"


def test_the_adapter_list_names_real_files() -> None:
    for relative in ADAPTERS:
        assert (PACKAGE / relative).exists(), relative


def test_the_core_is_most_of_the_package() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in CORE}
    for expected in ("contracts.py", "applying.py", "wsrm/source.py", "wsrm/destination.py"):
        assert expected in names


@pytest.mark.parametrize("root", ["sql", "rabbitmq"])
def test_adapters_do_not_reach_into_composition_roots(root: str) -> None:
    for path in (PACKAGE / root).rglob("*.py"):
        imported = imported_modules(path)
        roots = {n for n in imported if n.split(".")[0] in {"api", "workers"}}
        assert not roots, path
        assert not {n for n in imported if n.startswith("durable_sessions.cli")}, path
