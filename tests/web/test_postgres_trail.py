"""A gateway whose trail is in PostgreSQL (audit.url): decisions, queries,
verification, and the audit commands reading the same table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.cli.test_cli import run
from tests.postgres_support import (
    POSTGRES_URL,
    accept_inserts,
    drop_table,
    new_table,
    refuse_inserts,
    require_postgres,
)
from tests.web.conftest import Make, sms
from tests.web.test_export import send_some


@pytest.fixture
def table() -> Iterator[str]:
    asyncio.run(require_postgres())
    name = new_table()
    yield name
    asyncio.run(drop_table(name))


KEY = "one-key-for-every-process"  # a trail shared by processes needs one key


def on_postgres(make_client: Make, table: str) -> TestClient:
    env = {"GATEWAY_AUDIT_URL": POSTGRES_URL, "GATEWAY_AUDIT_TABLE": table}
    return make_client(env=env | {"GATEWAY_AUDIT_KEY": KEY})


def test_decisions_go_to_postgres_and_verify(make_client: Make, table: str) -> None:
    client = on_postgres(make_client, table)
    send_some(client)
    listed = client.get("/v1/decisions").json()["decisions"]
    assert [d["decision"] for d in listed] == ["reject", "allow", "allow", "allow"]
    assert listed[1]["upstream"]["status"] == 201  # the answer, amended in the same table
    refused = client.get("/v1/decisions", params={"code": "opted_out"}).json()["decisions"]
    assert [d["recipient_hint"] for d in refused] == ["+1212…0109"]
    answer = client.get("/v1/audit/verify").json()
    assert answer["intact"] is True
    (writer,) = answer["trails"]
    assert writer["decisions"] == 4 and writer["trail"].startswith(f"{table}:")


def test_the_audit_commands_read_the_same_table(
    make_client: Make, table: str, tmp_path: Path
) -> None:
    client = on_postgres(make_client, table)
    send_some(client)
    expected = client.get("/v1/decisions").json()["decisions"]
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"audit: {{url: '{POSTGRES_URL}', table: {table}, key: {KEY}}}\n", encoding="utf-8"
    )
    done = run("audit", "query", "--config", str(config), "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == expected
    checked = run("audit", "verify", "--config", str(config), "--data-dir", str(tmp_path))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{table}:")
    assert "intact, " in checked.stdout and "(4 decisions, 3 amendments);" in checked.stdout
    pruned = run("audit", "prune", "--config", str(config), "--older-than", "400d")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout == f"{table}: removed 0 decisions and 0 amendments older than 400d\n"


def test_a_trail_that_cannot_be_written_sends_nothing(make_client: Make, table: str) -> None:
    client = on_postgres(make_client, table)
    assert client.post("/v1/messages", json=sms(to="+12125550100")).status_code == 201
    asyncio.run(refuse_inserts(table, "read-only"))
    try:
        refused = client.post("/v1/messages", json=sms(to="+12125550101"))
        assert refused.status_code == 503
        sent = client.get("/v1/sandbox/messages").json()
        assert len(sent["messages"]) == 1  # only the first one went out
    finally:
        asyncio.run(accept_inserts(table))
    assert client.post("/v1/messages", json=sms(to="+12125550102")).status_code == 201


DOWN = "postgresql://postgres@127.0.0.1:1/test"


def test_a_gateway_starts_while_postgres_is_down_and_sends_nothing(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_AUDIT_URL": DOWN, "GATEWAY_AUDIT_KEY": KEY})
    assert client.get("/readyz").status_code == 503
    refused = client.post("/v1/messages", json=sms(to="+12125550100"))
    assert refused.status_code == 503
    assert refused.json()["error"] == "the audit trail is unreachable; nothing was sent"
    assert client.get("/v1/sandbox/messages").json()["messages"] == []


def test_the_audit_commands_say_in_one_line_that_postgres_is_down(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"audit: {{url: '{DOWN}', key: {KEY}}}\n", encoding="utf-8")
    for action in ("query", "verify"):
        done = run("audit", action, "--config", str(config), "--data-dir", str(tmp_path))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("gateway: audit trail (PostgreSQL): ")
        assert done.stderr.count("\n") == 1
