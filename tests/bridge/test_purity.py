"""The sans-IO boundary: nothing under bridge/ imports Django, httpx, asyncio or the gateway's IO packages.

Walks the whole folder, so a new module is checked the day it is added (bridge/__init__.py
states the contract; import-linter's layers contract keeps the same boundary for our own packages).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
MODULES = sorted(BRIDGE.rglob("*.py"))
FORBIDDEN = {"django", "httpx", "httpx_sse", "httpcore", "asyncio", "asgiref", "channels", "daphne", "twisted",
             "socket", "threading", "time", "api", "logs", "plumbing", "upstreams", "gatewaysite"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            roots.add(".")  # relative imports could climb out of bridge/: the package uses absolute ones
    return roots


def test_the_walk_finds_every_module() -> None:
    """A guard for the guard: the walk sees the dialects and the state machine, not an empty folder."""
    names = {path.relative_to(BRIDGE).as_posix() for path in MODULES}
    assert {"stream.py", "tap.py", "dialects/chat/request.py", "dialects/chat/answer.py",
            "dialects/passthrough.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=[path.relative_to(BRIDGE).as_posix() for path in MODULES])
def test_pure_module_imports_no_io(path: Path) -> None:
    assert imported_roots(path) & (FORBIDDEN | {"."}) == set()


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text("import asyncio\nfrom django.conf import settings\nfrom upstreams.models import Upstream\n")
    assert imported_roots(module) & FORBIDDEN == {"asyncio", "django", "upstreams"}
