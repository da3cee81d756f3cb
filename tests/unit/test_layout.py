"""The layout's import rules (DESIGN.md §2): the two apps never import each other, the core
library imports neither app, and nothing in the product imports the examples."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "hermes_fed": {"tenant_node", "coordinator", "examples"},
    "tenant_node": {"coordinator", "examples"},
    "coordinator": {"tenant_node", "examples"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_none_of_what_it_must_not(package: str) -> None:
    # Execute: every module of the package, every import statement (lazy ones included)
    offenders = {str(path.relative_to(ROOT)): sorted(_imported_packages(path) & FORBIDDEN[package])
                 for path in sorted((ROOT / package).rglob("*.py"))}

    # Assert
    assert len(offenders) > 5  # the package was found and read
    assert {p: bad for p, bad in offenders.items() if bad} == {}


def test_the_rule_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from coordinator.logs import registry\n")
    assert _imported_packages(module) == {"coordinator"}
