"""Imports run one way: stores import only the shared rule state, never the rules."""

from __future__ import annotations

import ast
from pathlib import Path

import uptake

PACKAGE = Path(uptake.__file__).parent


def imported(path: Path) -> set[str]:
    """The absolute names of the modules a source file imports (relative ones resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_resolver_sees_relative_imports() -> None:
    names = imported(PACKAGE / "stores" / "memory.py")
    assert "uptake._rulestate" in names and "uptake.errors" in names


def test_stores_never_import_the_rules() -> None:
    for path in sorted((PACKAGE / "stores").glob("*.py")):
        wrong = {n for n in imported(path) if n == "uptake.rules" or n.startswith("uptake.rules.")}
        assert not wrong, f"{path.name} imports {wrong}"


def test_rules_and_stores_never_import_the_client() -> None:
    for folder in ("rules", "stores"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            names = imported(path)
            wrong = {n for n in names if n == "uptake.client" or n.startswith("uptake.client.")}
            assert not wrong, f"{folder}/{path.name} imports {wrong}"
