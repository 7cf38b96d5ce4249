"""The shape of the code, measured: ``python -m tools.structure`` (make lint) prints it and fails on a breach.

- **Complexity**: no function above MAX_COMPLEXITY (radon's cyclomatic complexity).
- **Size**: no module above MAX_LINES lines.
- **Folders**: no package with more than MAX_MODULES modules (``__init__.py`` counts).
- **Cycles**: no import cycle between the app's modules, lazy imports included (grimp's graph).
- **Maps**: every package's ``__init__`` docstring names each of its modules and subpackages,
  so a newcomer can read the folder from its map.

Measured: the app's packages and bench/; not tests/ (a table of cases may be long) nor
migrations (generated).
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp
from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parent.parent
APP = ("gatewaysite", "api", "logs", "state", "upstreams", "plumbing", "bridge")
MEASURED = (*APP, "bench", "tools")
MAX_COMPLEXITY, MAX_LINES, MAX_MODULES = 15, 500, 12


@dataclass(frozen=True)
class Breach:
    rule: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}: {self.detail}"


def sources(roots: tuple[str, ...] = MEASURED) -> Iterator[Path]:
    """The measured Python files, migrations left out."""
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def packages(roots: tuple[str, ...] = MEASURED) -> Iterator[Path]:
    """The measured packages (folders with an ``__init__.py``), migrations left out."""
    for root in roots:
        for init in sorted((ROOT / root).rglob("__init__.py")):
            if "migrations" not in init.parts:
                yield init.parent


def complexity() -> list[Breach]:
    found = []
    for path in sources():
        for block in cc_visit(path.read_text()):
            if block.complexity > MAX_COMPLEXITY:
                name = f"{block.classname}.{block.name}" if getattr(block, "classname", None) else block.name
                found.append(Breach("complexity", f"{path.relative_to(ROOT)}:{block.lineno} {name}",
                                    f"{block.complexity} > {MAX_COMPLEXITY}"))
    return found


def sizes() -> list[Breach]:
    found = []
    for path in sources():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            found.append(Breach("size", str(path.relative_to(ROOT)), f"{lines} lines > {MAX_LINES}"))
    return found


def members(package: Path) -> list[str]:
    """A package's modules and subpackages (``__init__`` and Django's conventional folders left out)."""
    names = [path.stem for path in package.glob("*.py") if path.stem != "__init__"]
    names += [path.name for path in package.iterdir() if (path / "__init__.py").exists()
              and path.name not in ("migrations", "management", "commands", "templatetags")]
    return sorted(names)


def folders() -> list[Breach]:
    found = []
    for package in packages():
        count = len(list(package.glob("*.py")))
        if count > MAX_MODULES:
            found.append(Breach("folder", str(package.relative_to(ROOT)), f"{count} modules > {MAX_MODULES}"))
    return found


def maps(roots: tuple[str, ...] = APP) -> list[Breach]:
    """Each module and subpackage of a package is named in its ``__init__`` docstring (as a word of its own)."""
    found = []
    for package in packages(roots):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        words = set(docstring.replace("/", " ").replace(".py", " ").replace("`", " ").split())
        for name in members(package):
            if name not in words:
                found.append(Breach("map", str(package.relative_to(ROOT)), f"{name} is not in its __init__ map"))
    return found


def cycles() -> list[Breach]:
    """Each set of the app's modules that import one another round (Tarjan's strongly connected components)."""
    graph = grimp.build_graph(*APP, include_external_packages=False)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(module: str) -> None:  # iterative: deep import chains must not hit the recursion limit
        work = [(module, iter(sorted(graph.find_modules_directly_imported_by(module))))]
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return [Breach("cycle", f"{len(component)} modules", " -> ".join(component)) for component in components]


def report() -> list[Breach]:
    return [*complexity(), *sizes(), *folders(), *maps(), *cycles()]


def main() -> int:
    breaches = report()
    for breach in breaches:
        print(breach)
    print(f"structure: {len(breaches)} breach(es)" if breaches else "structure: every rule kept")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
