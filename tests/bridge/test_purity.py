"""The sans-IO boundary: the protocol modules import no Django, httpx or asyncio (bridge/__init__.py)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
PURE = ["errors", "validation", "events", "chat", "request", "stream", "sse", "tap"]
FORBIDDEN = {"django", "httpx", "httpx_sse", "asyncio", "asgiref", "channels", "upstreams"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    assert imported_roots(BRIDGE / f"{module}.py") & FORBIDDEN == set()
