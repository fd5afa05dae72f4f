"""`gateway opt-out add|remove|import` beside a real `gateway serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.cli.test_audit_cli import RULES, sms
from tests.cli.test_cli import run
from tests.server import Server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "rules.yaml").write_text(RULES, encoding="utf-8")
    data = tmp_path / "data"
    server = Server("--policies", str(policies), "--data-dir", str(data))
    try:
        server.wait_ready()
        yield server, data
    finally:
        server.stop()


def status(server: Server, to: str) -> int:
    return httpx.post(server.url + "/v1/messages", json=sms(to)).status_code


def test_add_and_remove_take_effect_at_once(served: tuple[Server, Path]) -> None:
    server, data = served
    assert status(server, "+12125550100") == 201
    done = run("opt-out", "add", "--data-dir", str(data), "global", "+1 212 555 0100")
    assert (done.returncode, done.stdout) == (0, "+1212…0100 added to global\n")
    assert status(server, "+12125550100") == 403
    entry = httpx.get(server.url + "/v1/opt-outs/global/+12125550100").json()
    assert entry["source"] == "cli"
    again = run("opt-out", "add", "--data-dir", str(data), "global", "+12125550100")
    assert again.stdout == "+1212…0100 was already on global\n"
    done = run("opt-out", "remove", "--data-dir", str(data), "global", "+12125550100")
    assert (done.returncode, done.stdout) == (0, "+1212…0100 removed from global\n")
    assert status(server, "+12125550100") == 201
    gone = run("opt-out", "remove", "--data-dir", str(data), "global", "+12125550100")
    assert gone.stdout == "+1212…0100 was not on global\n"


def test_import_a_file(served: tuple[Server, Path], tmp_path: Path) -> None:
    server, data = served
    csv = tmp_path / "old-system.csv"
    csv.write_text("address,note\n+12125550101,web form\n+12125550102,\n", encoding="utf-8")
    done = run("opt-out", "import", "--data-dir", str(data), "global", str(csv))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "2 rows: 2 added to global, 0 already on it\n"
    assert status(server, "+12125550101") == 403
    assert status(server, "+12125550102") == 403
    note = httpx.get(server.url + "/v1/opt-outs/global/+12125550101").json()["note"]
    assert note == "web form"
    piped = run("opt-out", "import", "--data-dir", str(data), "global", "-", stdin="+12125550102\n")
    assert piped.stdout == "1 rows: 0 added to global, 1 already on it\n"


def test_a_bad_file_adds_nothing(served: tuple[Server, Path], tmp_path: Path) -> None:
    server, data = served
    bad = tmp_path / "bad.csv"
    bad.write_text("+12125550103\n+1 nope\n", encoding="utf-8")
    done = run("opt-out", "import", "--data-dir", str(data), "global", str(bad))
    assert done.returncode == 2
    assert done.stderr.startswith("gateway: the import was refused, nothing was added: row 2: ")
    assert len(done.stderr.splitlines()) == 1
    assert status(server, "+12125550103") == 201


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "bad list", "+12125550100"], "'bad list' is not a list name"),
        (["add", "global", "+1"], "is not a phone number"),
        (["import", "global", "/no/such.csv"], "/no/such.csv: No such file or directory"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path: Path, args: list[str], error: str) -> None:
    done = run("opt-out", args[0], "--data-dir", str(tmp_path / "data"), *args[1:])
    assert done.returncode == 2
    assert error in done.stderr and len(done.stderr.splitlines()) == 1
