"""`GET /v1/audit/verify`: the gateway's own trail, checked while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import sms
from tests.web.test_export import send_some


def test_an_untouched_trail_is_intact_and_its_head_is_found_later(client: TestClient) -> None:
    send_some(client)
    first = client.get("/v1/audit/verify")
    assert first.status_code == 200
    body = first.json()
    assert body["intact"] is True
    (trail,) = body["trails"]
    assert trail["decisions"] == 4 and trail["problem"] is None
    kept = trail["head"]
    assert client.post("/v1/messages", json=sms(to="+12125550107")).status_code == 201
    later = client.get("/v1/audit/verify", params={"head": kept.upper()}).json()
    assert later["intact"] is True and later["head_found"] is True
    assert later["trails"][0]["head"] != kept and later["trails"][0]["decisions"] == 5


def test_an_altered_journal_is_an_answer_naming_the_place(
    client: TestClient, tmp_path: Path
) -> None:
    send_some(client)
    assert client.get("/v1/audit/verify").json()["intact"] is True
    (journal,) = (tmp_path / "data-0" / "audit.journal").glob("*.jsonl")
    lines = journal.read_bytes().splitlines(keepends=True)
    assert b'"decision":"reject"' in lines[-1]
    lines[-1] = lines[-1].replace(b'"decision":"reject"', b'"decision":"allow!"')
    journal.write_bytes(b"".join(lines))
    answer = client.get("/v1/audit/verify")
    assert answer.status_code == 200
    body = answer.json()
    assert body["intact"] is False
    problem = body["trails"][0]["problem"]
    assert (problem["file"], problem["line"]) == (journal.name, len(lines))
    assert "does not match its link" in problem["reason"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"head": "abc"}, "head"), ({"head": "zz" * 32}, "head"), ({"from": "1"}, "from")],
)
def test_bad_parameters_are_400(client: TestClient, params: dict[str, str], field: str) -> None:
    answer = client.get("/v1/audit/verify", params=params)
    assert answer.status_code == 400
    assert field in answer.json()["fields"]
