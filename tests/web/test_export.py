"""`GET /v1/decisions/export`: NDJSON and CSV, the filters, paging, failures."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.audit.base import DecisionQuery
from gateway.audit.memory import MemoryTrail
from gateway.clock import FixedClock
from gateway.errors import AuditUnavailable
from gateway.settings import load_settings
from gateway.web import export
from tests.adapters.conftest import Server
from tests.web.conftest import NOON_NY, app_with, sms


def send_some(client: TestClient) -> None:
    """Three allowed messages, then one refused because its recipient opted out."""
    for n in range(3):
        assert client.post("/v1/messages", json=sms(to=f"+1212555010{n}")).status_code == 201
    assert client.put("/v1/opt-outs/global/+12125550109").status_code == 201
    assert client.post("/v1/messages", json=sms(to="+12125550109")).status_code == 403


def lines(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines()]


def test_ndjson_holds_every_decision_as_the_api_gives_it(client: TestClient) -> None:
    send_some(client)
    answer = client.get("/v1/decisions/export")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ndjson"
    assert answer.headers["content-disposition"] == 'attachment; filename="decisions.ndjson"'
    assert answer.text.endswith("\n")
    listed = client.get("/v1/decisions").json()["decisions"]
    assert lines(answer.text) == listed
    assert [d["decision"] for d in listed] == ["reject", "allow", "allow", "allow"]


def test_the_filters_of_the_list_apply(client: TestClient) -> None:
    send_some(client)
    refused = lines(client.get("/v1/decisions/export", params={"code": "opted_out"}).text)
    assert [d["recipient_hint"] for d in refused] == ["+1212…0109"]
    one = client.get("/v1/decisions/export", params={"recipient": "+1 212 555 0101"}).text
    assert [d["recipient_hint"] for d in lines(one)] == ["+1212…0101"]
    later = client.get("/v1/decisions/export", params={"since": "2026-06-03T00:00:00Z"})
    assert later.status_code == 200 and later.text == ""


def test_pages_follow_one_another_newest_first(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(7):
        client.post("/v1/messages", json=sms(to=f"+1212555010{n}", category="transactional"))
    monkeypatch.setattr(export, "PAGE", 2)
    exported = lines(client.get("/v1/decisions/export").text)
    listed = client.get("/v1/decisions").json()["decisions"]
    assert len(exported) == 7
    assert [d["decision_id"] for d in exported] == [d["decision_id"] for d in listed]


def test_csv_has_one_row_per_decision(client: TestClient) -> None:
    send_some(client)
    answer = client.get("/v1/decisions/export", params={"format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="decisions.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert tuple(rows[0]) == export.COLUMNS
    listed = client.get("/v1/decisions").json()["decisions"]
    assert [r["decision_id"] for r in rows] == [d["decision_id"] for d in listed]
    refused, allowed = rows[0], rows[1]
    assert refused["decision"] == "reject"
    assert refused["reasons"] == "global-opt-out:opted_out"
    assert refused["upstream_status"] == "" and refused["deliver_at"] == ""
    assert allowed["reasons"] == "" and allowed["upstream_status"] == "201"
    assert allowed["recipient"].startswith("hmac:")
    assert allowed["at"] == "2026-06-02T15:00:00Z"


def test_csv_quotes_what_needs_quoting() -> None:
    record = {"decision_id": "x", "sender": 'acme, "north"', "reasons": [], "upstream": None}
    fields = next(csv.reader(io.StringIO(export.csv_lines([export.row(record)]).decode())))
    assert fields[export.COLUMNS.index("sender")] == 'acme, "north"'
    assert len(fields) == len(export.COLUMNS)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"cursor": "5"}, "cursor"),  # an export has no pages to ask for
        ({"since": "yesterday"}, "since"),
    ],
)
def test_bad_requests_are_400(client: TestClient, params: dict[str, str], field: str) -> None:
    answer = client.get("/v1/decisions/export", params=params)
    assert answer.status_code == 400
    assert field in answer.json()["fields"]


class SlowTrail(MemoryTrail):
    """The in-memory trail, counting its reads and taking 10 ms for each."""

    queries = 0

    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        self.queries += 1
        await asyncio.sleep(0.01)
        return await super().query(query)


class FailingTrail(MemoryTrail):
    """The in-memory trail, whose reads fail from the `fail_from`-th query on."""

    def __init__(self, fail_from: int) -> None:
        super().__init__()
        self.queries = 0
        self.fail_from = fail_from

    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        self.queries += 1
        if self.queries >= self.fail_from:
            raise AuditUnavailable("audit trail: the index cannot be read")
        return await super().query(query)


def test_a_trail_that_cannot_be_read_is_503(tmp_path: Path, write_policies: Any) -> None:
    with TestClient(app_with(tmp_path, write_policies, trail=FailingTrail(1))) as client:
        answer = client.get("/v1/decisions/export")
    assert answer.status_code == 503


def test_a_failure_mid_stream_leaves_the_export_cut_off(
    tmp_path: Path, write_policies: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PAGE", 1)
    trail = FailingTrail(3)  # two pages go out, the third read fails
    server = Server(app_with(tmp_path, write_policies, trail=trail))
    try:
        for n in range(4):
            body = json.dumps(sms(to=f"+1212555010{n}", category="transactional"))
            conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=10)
            conn.request("POST", "/v1/messages", body, {"content-type": "application/json"})
            assert conn.getresponse().status == 201
            conn.close()
        conn = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=10)
        conn.request("GET", "/v1/decisions/export")
        answer = conn.getresponse()
        assert answer.status == 200
        with pytest.raises(http.client.IncompleteRead) as cut:
            answer.read()
        assert len(lines(cut.value.partial.decode())) == 2
        conn.close()
    finally:
        server.stop()


def test_a_client_that_hangs_up_stops_the_export(
    tmp_path: Path, write_policies: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PAGE", 1)
    trail = SlowTrail()
    server = Server(app_with(tmp_path, write_policies, trail=trail))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for n in range(100):
                body = sms(to=f"+1212555{n:04d}", category="transactional")
                assert http.post("/v1/messages", json=body).status_code == 201
            with http.stream("GET", "/v1/decisions/export") as answer:
                next(answer.iter_lines())  # the first decision, then hang up
        time.sleep(0.3)
        seen = trail.queries
        time.sleep(0.3)
        assert trail.queries == seen < 50  # 100 pages, 10 ms each, had it read on
    finally:
        server.stop()


def test_ndjson_lines_hold_whatever_a_kept_body_holds(tmp_path: Path, write_policies: Any) -> None:
    # Kept bodies may hold U+2028, U+2029 or NEL, which some readers take for
    # a line's end: escaped, one decision is one line for every reader.
    root = write_policies({"rules.yaml": "rules: []\n"})
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_AUDIT": "{store_bodies: true}"}
    settings = load_settings(None, env, policies=root)
    app = create_app(settings, clock=FixedClock(NOON_NY), run_scheduler=False)
    body = "one\u2028two\u2029three"
    with TestClient(app) as client:
        assert client.post("/v1/messages", json=sms(body=body)).status_code == 201
        text = client.get("/v1/decisions/export").text
    assert "\u2028" not in text and "\u2029" not in text
    (record,) = lines(text)
    assert record["content"]["body"]["text"] == body
