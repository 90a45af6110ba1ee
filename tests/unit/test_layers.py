"""libs/ is the bottom layer: it imports neither the services, the gateway nor the
`deployforge` processes package (so a context can use any of it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE = ("deployforge", "services", "gateway")


def test_libs_import_nothing_above_them() -> None:
    offenders = []
    for path in sorted((ROOT / "libs").glob("**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in ABOVE
            ]
    assert offenders == []


def test_the_web_ui_is_a_client_of_the_api() -> None:
    """gateway/ui reads and changes everything through /v1 (the SDK), like dfctl: it
    imports no server package, only itself, the SDK and its libraries."""
    offenders = []
    for path in sorted((ROOT / "gateway" / "ui").glob("**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in ("libs", *ABOVE) and not name.startswith("gateway.ui")
            ]
    assert offenders == []
