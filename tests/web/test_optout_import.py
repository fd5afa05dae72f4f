"""`POST /v1/opt-outs/{list}/import`: a CSV of addresses, all added or none."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from gateway import optouts
from gateway.web import admin
from tests.web.conftest import Make, sms
from tests.web.test_auth import bearer, keys

CSV = "text/csv"


def post_import(client: TestClient, text: str | bytes, name: str = "global") -> dict[str, object]:
    answer = client.post(f"/v1/opt-outs/{name}/import", content=text, headers={"content-type": CSV})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_a_csv_with_a_header_and_notes(client: TestClient) -> None:
    text = "Note,Address\nasked by phone,+1 212 555 0100\n,ann@example.com\n"
    assert post_import(client, text) == {"list": "global", "rows": 2, "added": 2, "already": 0}
    entry = client.get("/v1/opt-outs/global/+12125550100").json()
    assert (entry["source"], entry["note"], entry["recipient_hint"]) == (
        "import",
        "asked by phone",
        "+1212…0100",
    )
    assert client.get("/v1/opt-outs/global/ann@EXAMPLE.com").json()["note"] is None
    refused = client.post("/v1/messages", json=sms(to="+12125550100"))
    assert refused.status_code == 403
    assert refused.json()["reasons"][0]["code"] == "opted_out"


def test_one_address_per_line_and_again(client: TestClient) -> None:
    text = "\ufeff+12125550100\n\n# from the old system\n+12125550101\n"
    assert post_import(client, text.encode("utf-8")) == {
        "list": "global",
        "rows": 2,
        "added": 2,
        "already": 0,
    }
    again = post_import(client, "+12125550101\n+12125550102\n")
    assert (again["added"], again["already"]) == (1, 1)


def test_a_bad_row_refuses_the_whole_import(client: TestClient) -> None:
    answer = client.post(
        "/v1/opt-outs/global/import",
        content="+12125550100\n+1212\nnot an address!\n",
        headers={"content-type": CSV},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith("the import was refused, nothing was added: row 2: ")
    assert "; row 3: 'not an address!' is not a push token or topic" in error
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 404


def test_many_bad_rows_are_counted(client: TestClient) -> None:
    text = "address\n" + "+1\n" * (optouts.MAX_PROBLEMS + 5)
    answer = client.post("/v1/opt-outs/global/import", content=text)
    assert answer.status_code == 400
    assert answer.json()["error"].endswith("; and 5 more rows")
    assert answer.json()["fields"] == {"rows": f"{optouts.MAX_PROBLEMS + 5} invalid"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "the import holds no address"),
        (b"address,note\n\n", "the import holds no address"),
        (b"\xff\xfe+1212", "the import is not UTF-8 text (byte 0)"),
        (b"address,note\n,why\n", "the import was refused, nothing was added: row 2: no address"),
    ],
)
def test_bad_bodies(client: TestClient, body: bytes, error: str) -> None:
    answer = client.post("/v1/opt-outs/global/import", content=body)
    assert answer.status_code == 400
    assert answer.json()["error"] == error


def test_too_large_and_bad_list(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "IMPORT_LIMIT", 1024)
    big = client.post("/v1/opt-outs/global/import", content="+12125550100\n" * 100)
    assert big.status_code == 413
    bad = client.post("/v1/opt-outs/no%20spaces/import", content="+12125550100\n")
    assert bad.status_code == 400


def test_stored_recipients_import_as_they_are(client: TestClient) -> None:
    # An entry as an export would give it: the pseudonym, not the address.
    client.put("/v1/opt-outs/global/+12125550100")
    token = client.get("/v1/opt-outs/global/+12125550100").json()["recipient"]
    assert post_import(client, f"address\n{token}\n", name="sender:acme")["added"] == 1
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").json()["recipient"] == token


def test_import_is_for_admins(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_API_KEYS": keys(aud1t="auditor", r00t="admin")})
    path = "/v1/opt-outs/global/import"
    assert client.post(path, content="+12125550100\n", headers=bearer("aud1t")).status_code == 403
    assert client.post(path, content="+12125550100\n", headers=bearer("r00t")).status_code == 200
