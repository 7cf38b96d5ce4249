"""The shape of the code (tools/structure.py): each package's map names its modules, and every rule holds."""
from __future__ import annotations

from pathlib import Path

import pytest

from tools import structure


def test_every_module_is_named_in_its_package_map() -> None:
    """A newcomer reads a folder from its ``__init__`` docstring: a module it leaves out is a failure."""
    assert structure.maps() == []


def test_a_module_left_out_of_its_map_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text('"""The app.\n\n    named  a module the map names\n"""\n')
    (package / "named.py").write_text("")
    (package / "forgotten.py").write_text("")
    monkeypatch.setattr(structure, "ROOT", tmp_path)
    assert [str(breach) for breach in structure.maps(("app",))] == ["map: app: forgotten is not in its __init__ map"]


@pytest.mark.parametrize("rule", [structure.complexity, structure.sizes, structure.folders, structure.cycles],
                         ids=["complexity", "size", "folders", "cycles"])
def test_the_code_keeps_the_rule(rule: object) -> None:
    assert rule() == []  # type: ignore[operator]
