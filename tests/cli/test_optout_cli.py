"""`gateway opt-out add|remove|import` beside a real `gateway serve`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.cli.test_audit_cli import gateway_on_folder, sms
from tests.cli.test_cli import run
from tests.server import Server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    with gateway_on_folder(tmp_path) as running:
        yield running


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


def test_add_and_remove_by_stored_recipient(served: tuple[Server, Path]) -> None:
    """The recipient an export or a decision shows names the entry from the
    shell too, in either case, and is never hashed again."""
    server, data = served
    httpx.put(server.url + "/v1/opt-outs/global/+12125550100")
    token = httpx.get(server.url + "/v1/opt-outs/global/+12125550100").json()["recipient"]
    added = run("opt-out", "add", "--data-dir", str(data), "elsewhere", token.upper())
    assert (added.returncode, added.stdout) == (0, f"{token} added to elsewhere\n")
    assert httpx.get(f"{server.url}/v1/opt-outs/elsewhere/{token}").json()["recipient"] == token
    assert status(server, "+12125550100") == 403
    gone = run("opt-out", "remove", "--data-dir", str(data), "global", token)
    assert (gone.returncode, gone.stdout) == (0, f"{token} removed from global\n")
    assert status(server, "+12125550100") == 201
    wrong = run("opt-out", "remove", "--data-dir", str(data), "global", "hmac:" + "0" * 39)
    assert wrong.returncode == 2
    assert "is not a stored recipient" in wrong.stderr


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


def test_export_and_import_back(served: tuple[Server, Path], tmp_path: Path) -> None:
    server, data = served
    for n in range(3):
        run("opt-out", "add", "--data-dir", str(data), "global", f"+1212555011{n}")
    out = tmp_path / "global.csv"
    done = run("opt-out", "export", "--data-dir", str(data), "global", "--output", str(out))
    assert (done.returncode, done.stderr) == (0, f"exported 3 entries to {out}\n")
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert sorted(r["recipient_hint"] for r in rows) == ["+1212…0110", "+1212…0111", "+1212…0112"]
    assert [r["recipient"] for r in rows] == sorted(r["recipient"] for r in rows)
    assert {r["source"] for r in rows} == {"cli"}
    back = run("opt-out", "import", "--data-dir", str(data), "promo", str(out))
    assert back.stdout == "3 rows: 3 added to promo, 0 already on it\n"
    same = run("opt-out", "export", "--data-dir", str(data), "promo")
    assert [r["recipient"] for r in csv.DictReader(io.StringIO(same.stdout))] == [
        r["recipient"] for r in rows
    ]
    entry = httpx.get(server.url + "/v1/opt-outs/promo/+12125550111").json()
    assert entry["source"] == "import"


def test_export_needs_state(tmp_path: Path) -> None:
    done = run("opt-out", "export", "--data-dir", str(tmp_path), "global")
    assert (done.returncode, done.stderr) == (
        2,
        f"gateway: {tmp_path}: no state here, so no opt-outs\n",
    )
    assert list(tmp_path.iterdir()) == []


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


def test_link_makes_a_working_one_click_unsubscribe(served: tuple[Server, Path]) -> None:
    server, data = served
    email = {"channel": "email", "to": "ann@example.com", "subject": "Hi", "body": "Sale"}
    assert httpx.post(server.url + "/v1/messages", json=email).status_code == 201
    base = server.url + "/v1/unsubscribe"
    done = run("opt-out", "link", "--data-dir", str(data), "--url", base, "ann@example.com")
    assert done.returncode == 0, done.stderr
    url, header, post = done.stdout.splitlines()
    assert url.startswith(base + "?token=")
    assert header == f"List-Unsubscribe: <{url}>"
    assert post == "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    # The gateway reads the link the command signed: the same kept key.
    answer = httpx.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200
    assert httpx.post(server.url + "/v1/messages", json=email).status_code == 403


def test_link_needs_a_url(served: tuple[Server, Path]) -> None:
    _, data = served
    done = run("opt-out", "link", "--data-dir", str(data), "ann@example.com")
    assert done.returncode == 2
    assert done.stderr == (
        "gateway: --url: where do mail clients reach POST /v1/unsubscribe?"
        " (or set unsubscribe.url)\n"
    )
    bad = run(
        "opt-out", "link", "--data-dir", str(data), "--url", "https://gw.example/v1/unsubscribe",
        "--list", "no spaces", "ann@example.com",
    )  # fmt: skip
    assert (bad.returncode, bad.stderr) == (
        2,
        "gateway: 'no spaces' is not a list name (letters, digits, . _ : @ -)\n",
    )


def test_a_folder_that_does_not_exist_is_refused_not_made(tmp_path: Path) -> None:
    """A mistyped --data-dir would get state and a key of its own, which no
    gateway reads: the opt-out would be lost without a word."""
    mistyped = tmp_path / "gateway-dat"
    for args in (
        ("add", "global", "+12125550100"),
        ("link", "ann@example.com", "--url", "https://gw.example.com/v1/unsubscribe"),
    ):
        done = run("opt-out", args[0], "--data-dir", str(mistyped), *args[1:])
        assert done.returncode == 2
        assert done.stderr == (
            f"gateway: {mistyped}: no such data folder (give the gateway's --data-dir;"
            " to start an empty one, create the folder first)\n"
        )
    assert not mistyped.exists()


def test_what_the_command_line_writes_is_for_its_user_alone(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert run("opt-out", "add", "--data-dir", str(fresh), "global", "+12125550100").returncode == 0
    made = sorted(p.name for p in fresh.iterdir())
    assert "state.db" in made
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in fresh.iterdir()} == dict.fromkeys(
        made, "0o600"
    )


def test_a_data_folder_of_the_other_mode_is_refused(tmp_path: Path) -> None:
    """A shared-mode folder written to without GATEWAY_REDIS_URL would get an
    embedded store and a key no gateway reads: the STOP would be lost."""
    shared = tmp_path / "shared"
    (shared / "worker-1").mkdir(parents=True)
    (shared / "worker-1" / "audit.db").write_bytes(b"")
    done = run("opt-out", "add", "--data-dir", str(shared), "global", "+12125550100")
    assert done.returncode == 2
    assert "is a shared-mode data folder (worker-N)" in done.stderr
    assert not (shared / "state.db").exists()
