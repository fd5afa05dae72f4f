"""Shared fixtures: bundles written from text, fixed clocks."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_policies(tmp_path: Path) -> Callable[..., Path]:
    """Write rule files (name -> YAML text) into a fresh policies folder."""

    def write(files: dict[str, str], folder: str = "policies") -> Path:
        root = tmp_path / folder
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        root.mkdir(parents=True, exist_ok=True)
        return root

    return write
