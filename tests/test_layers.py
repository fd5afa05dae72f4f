"""The pure core does no I/O: its modules import only each other (and the
store's contract, which is plain data), never the store backends, the trail,
the upstream client, the web layer or the wiring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PURE = ["errors.py", "clock.py", "model.py", "engine.py", "rules", "policy", "text", "schedule"]
ALLOWED = (
    "gateway.errors",
    "gateway.clock",
    "gateway.model",
    "gateway.engine",
    "gateway.rules",
    "gateway.policy",
    "gateway.text",
    "gateway.schedule",
    "gateway.store.base",
)


def pure_files() -> list[Path]:
    root = REPO / "gateway"
    files: list[Path] = []
    for name in PURE:
        path = root / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def project_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name == "gateway" or name.startswith("gateway.")]


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_pure_modules_import_only_the_pure_core(path: Path) -> None:
    outside = [m for m in project_imports(path) if not m.startswith(ALLOWED)]
    assert outside == []


def test_the_list_covers_real_files() -> None:
    assert len(pure_files()) > 20
