"""`gateway audit query|export` on the data folder of a real `gateway serve`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from gateway import audit_cli
from gateway.audit import reader
from gateway.errors import AuditUnavailable, GatewayError
from gateway.settings import load_settings
from gateway.web.export import COLUMNS
from tests.cli.test_cli import run
from tests.redis_support import REDIS_URL, new_prefix, require_redis_sync
from tests.server import Server

RULES = "rules:\n  - {id: stop, type: opt_out, lists: [global]}\n"


def sms(to: str) -> dict[str, Any]:
    return {"channel": "sms", "to": to, "body": "Hello", "category": "marketing"}


@contextmanager
def gateway_on_folder(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """`gateway serve` with one opt-out rule, running, and its data folder."""
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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """A gateway that decided four messages: three allowed, then one refused
    because its recipient opted out."""
    with gateway_on_folder(tmp_path) as (server, data):
        for n in range(3):
            assert httpx.post(server.url + "/v1/messages", json=sms(f"+1212555010{n}")).is_success
        assert httpx.put(server.url + "/v1/opt-outs/global/+12125550109").status_code == 201
        assert httpx.post(server.url + "/v1/messages", json=sms("+12125550109")).status_code == 403
        yield server, data


def listed(server: Server) -> list[dict[str, Any]]:
    answer = httpx.get(server.url + "/v1/decisions")
    decisions: list[dict[str, Any]] = answer.json()["decisions"]
    return decisions


def query(data: Path, *args: str) -> list[dict[str, Any]]:
    done = run("audit", "query", "--data-dir", str(data), *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_query_beside_a_running_gateway(served: tuple[Server, Path]) -> None:
    server, data = served
    expected = listed(server)  # the API waits for the index: so much is in it now
    assert [d["decision"] for d in expected] == ["reject", "allow", "allow", "allow"]
    assert query(data) == expected
    assert query(data, "--limit", "2") == expected[:2]


def test_query_filters(served: tuple[Server, Path]) -> None:
    server, data = served
    listed(server)
    refused = query(data, "--code", "opted_out")
    assert [d["recipient_hint"] for d in refused] == ["+1212…0109"]
    one = query(data, "--recipient", "+1 (212) 555-0101")
    assert [d["recipient_hint"] for d in one] == ["+1212…0101"]
    assert query(data, "--recipient", one[0]["recipient"].upper()) == one  # as an export shows it
    assert query(data, "--decision", "allow", "--since", "2000-01-01") == query(data)[1:]
    assert query(data, "--until", "2000-01-01T00:00:00Z") == []


def test_query_after_the_gateway_stopped(served: tuple[Server, Path]) -> None:
    server, data = served
    expected = listed(server)
    server.stop()
    assert query(data) == expected


def test_export_csv_to_a_file(served: tuple[Server, Path], tmp_path: Path) -> None:
    server, data = served
    expected = listed(server)
    out = tmp_path / "trail.csv"
    done = run("audit", "export", "--data-dir", str(data), "--format", "csv", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"exported 4 decisions to {out}\n"
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == COLUMNS
    assert [r["decision_id"] for r in rows] == [d["decision_id"] for d in expected]
    assert rows[0]["reasons"] == "stop:opted_out"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_export_ndjson_to_standard_output(served: tuple[Server, Path]) -> None:
    server, data = served
    expected = listed(server)
    done = run("audit", "export", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == expected


def test_a_failed_export_leaves_no_file(
    served: tuple[Server, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    server, data = served
    listed(server)
    real = reader.records

    def breaking(data_dir: Path, q: Any) -> Iterator[dict[str, Any]]:
        found = real(data_dir, q)
        yield next(found)
        raise AuditUnavailable("audit trail: cannot read the journal")

    monkeypatch.setattr(reader, "records", breaking)
    out = tmp_path / "trail.ndjson"
    from gateway.cli import main

    assert main(["audit", "export", "--data-dir", str(data), "--output", str(out)]) == 2
    assert "cannot read the journal" in capsys.readouterr().err
    assert list(tmp_path.glob("*trail*")) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--since", "yesterday"], "gateway: --since: 'yesterday' is not an ISO 8601 time"),
        (["--limit", "0"], "gateway: --limit: 0 is not a positive number"),
        (["--recipient", "not a number!"], "gateway: 'not a number!' is not a push token or topic"),
        # An empty filter is one left unfilled, as HTTP says: not "nothing matches".
        (["--sender", ""], "gateway: --sender: empty; leave a filter out to match every decision"),
    ],
)
def test_bad_arguments_are_one_line(
    served: tuple[Server, Path], args: list[str], error: str
) -> None:
    _, data = served
    done = run("audit", "query", "--data-dir", str(data), *args)
    assert done.returncode == 2
    assert done.stderr == error + "\n"


def test_folders_without_a_trail(tmp_path: Path) -> None:
    done = run("audit", "query", "--data-dir", str(tmp_path / "nope"))
    assert (done.returncode, done.stderr) == (
        2,
        f"gateway: {tmp_path / 'nope'}: no such data folder\n",
    )
    done = run("audit", "export", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == (
        f"gateway: {tmp_path}: no audit trail here (no audit.db, no worker-N/audit.db)\n"
    )


def test_a_recipient_needs_the_kept_key(served: tuple[Server, Path]) -> None:
    server, data = served
    server.stop()
    (data / "state.db").unlink()
    done = run("audit", "query", "--data-dir", str(data), "--recipient", "+12125550100")
    assert done.returncode == 2
    assert done.stderr == f"gateway: {data}: no state here, so no pseudonymization key\n"
    assert len(query(data)) == 4  # without a recipient, no key is needed


def test_verify_an_intact_trail_and_a_head_kept_from_it(served: tuple[Server, Path]) -> None:
    server, data = served
    listed(server)
    done = run("audit", "verify", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    # Three upstream answers were recorded as amendments of the allowed decisions.
    assert line.startswith("audit.db: intact, 7 entries (4 decisions, 3 amendments) in 1 file;")
    head = line.rsplit(" ", 1)[1]
    assert len(head) == 64
    httpx.post(server.url + "/v1/messages", json=sms("+12125550105"))
    listed(server)
    again = run("audit", "verify", "--data-dir", str(data), "--head", head, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["intact"] is True and report["head_found"] is True
    assert report["trails"][0]["decisions"] == 5


def test_verify_an_altered_trail_exits_1_naming_the_line(served: tuple[Server, Path]) -> None:
    server, data = served
    listed(server)
    server.stop()
    (journal,) = (data / "audit.journal").glob("*.jsonl")
    lines = journal.read_bytes().splitlines(keepends=True)
    n = max(i for i, line in enumerate(lines) if b'"sender":"' in line)
    lines[n] = lines[n].replace(b'"sender":"', b'"sender":"x')
    journal.write_bytes(b"".join(lines))
    done = run("audit", "verify", "--data-dir", str(data))
    assert done.returncode == 1
    assert done.stdout.startswith(f"audit.db: ALTERED at {journal.name} line {n + 1} (byte ")
    assert "does not match its link" in done.stdout
    unknown = run("audit", "verify", "--data-dir", str(data), "--head", "0" * 64)
    assert unknown.returncode == 1
    assert unknown.stdout.endswith(f"head {'0' * 64}: NOT FOUND in any trail\n")


def test_query_refuses_a_code_that_is_none(tmp_path: Path) -> None:
    done = run("audit", "query", "--data-dir", str(tmp_path), "--code", "opted-out")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("gateway: --code: 'opted-out' is not a reason code (opted_out,")
    assert done.stderr.count("\n") == 1


def test_verify_bad_arguments_are_one_line(tmp_path: Path) -> None:
    done = run("audit", "verify", "--data-dir", str(tmp_path), "--head", "xyz")
    assert (done.returncode, done.stderr) == (
        2,
        "gateway: --head: 'xyz' is not a head (64 hexadecimal digits)\n",
    )
    done = run("audit", "verify", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "no audit trail here" in done.stderr


def test_a_prefix_with_no_key_is_named(tmp_path: Path) -> None:
    require_redis_sync()
    # Shared mode under another prefix than the gateway's: say where it looked.
    prefix = new_prefix()
    settings = load_settings(
        None,
        {"GATEWAY_REDIS_URL": REDIS_URL, "GATEWAY_REDIS_PREFIX": prefix},
        data_dir=tmp_path,
    )
    with pytest.raises(GatewayError) as caught:
        asyncio.run(audit_cli._kept_key(settings))
    assert str(caught.value) == (
        f"no pseudonymization key is kept in Redis under the prefix '{prefix}' (is it the"
        " gateway's? set GATEWAY_REDIS_PREFIX), so no recipient can be looked up"
    )
