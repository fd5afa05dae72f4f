"""The commands' progress line and their whole-or-nothing output files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway import console
from gateway.errors import GatewayError


def test_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(console, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(console.sys.stderr, "isatty", lambda: True)
    progress = console.Progress("imported", total=3)
    for n in (1, 2, 3):
        progress.count(n)
        time.sleep(0.001)
    progress.done("3 rows")
    err = capsys.readouterr().err
    assert err == "\rimported 1 of 3\rimported 2 of 3\rimported 3 of 3\r\x1b[K3 rows\n"


def test_no_progress_when_not_asked_or_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(console, "PROGRESS_EVERY", 0.0)
    console.Progress("exported", "decisions").count()  # stderr is not a terminal here
    monkeypatch.setattr(console.sys.stderr, "isatty", lambda: True)
    quiet = console.Progress("exported", "decisions", show=False)
    quiet.count()
    quiet.done("done")
    assert capsys.readouterr().err == "done\n"


def test_an_output_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), console.output(target) as out:
        out.write("half")
        raise RuntimeError("the source failed")
    assert list(tmp_path.iterdir()) == []
    with console.output(target) as out:
        out.write("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with pytest.raises(GatewayError, match="cannot write"), console.output(tmp_path / "no" / "x"):
        pass
