"""The collector stands apart from the SDK: none of its modules imports the client."""

from __future__ import annotations

import ast
from pathlib import Path

import uptake.collector

COLLECTOR = Path(uptake.collector.__file__).parent


def test_no_collector_module_imports_the_client() -> None:
    modules = sorted(COLLECTOR.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                names = [alias.name for alias in node.names]
                assert target not in ("..client", "uptake.client"), f"{path.name}: {target}"
                assert not (target in ("..", "uptake") and "client" in names), path.name
                assert not (target in ("..", "uptake") and "Client" in names), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("uptake.client"), path.name
