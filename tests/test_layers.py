"""Lower layers never import higher ones: nothing under src/cacscore but cli itself imports cacscore.cli."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cacscore"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_command_line_imports_the_command_line() -> None:
    offenders = sorted(
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if "cli" not in path.relative_to(SRC).parts[:1]
        and any(name == "cacscore.cli" or name.startswith("cacscore.cli.") for name in _imports(path))
    )
    assert offenders == []


def test_the_model_products_do_not_import_the_phantom() -> None:
    """Key images are drawn by cacscore.render, not by the phantom generator's preview."""
    imported = _imports(SRC / "model" / "products.py")
    assert not any(name.startswith("cacscore.phantom") for name in imported)
    assert "cacscore.render" in imported
