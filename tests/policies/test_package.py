from __future__ import annotations

import ast
from pathlib import Path

import policies

POLICIES_DIR = Path(policies.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_policies_import_nothing_of_the_project_but_themselves() -> None:
    for path in sorted(POLICIES_DIR.glob("*.py")):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            assert top not in {"vmportal", "hypervisors"}, f"{path.name} imports {module}"


def test_every_exported_name_exists() -> None:
    for name in policies.__all__:
        assert hasattr(policies, name), name
