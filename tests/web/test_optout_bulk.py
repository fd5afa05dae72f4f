"""`POST /v1/opt-outs/{list}/import` (a CSV of addresses, all added or none)
and `GET /v1/opt-outs/{list}/export` (the list as the import takes it back)."""

from __future__ import annotations

import csv
import io
import threading
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from gateway import optouts
from gateway.errors import StoreUnavailable
from gateway.store.base import OptOutEntry
from gateway.store.memory import MemoryStore
from gateway.web import admin, export
from tests.adapters.conftest import Server
from tests.web.conftest import Make, app_with, sms
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


def test_without_a_header_a_second_column_is_a_note_and_a_third_is_refused(
    client: TestClient,
) -> None:
    text = '+12125550100,asked by phone\n+12125550101,"in a note:\u2028two lines"\n'
    assert post_import(client, text)["added"] == 2
    assert client.get("/v1/opt-outs/global/+12125550100").json()["note"] == "asked by phone"
    kept = client.get("/v1/opt-outs/global/+12125550101").json()["note"]
    assert kept == "in a note:\u2028two lines"
    answer = client.post(
        "/v1/opt-outs/global/import",
        content="+12125550102,a note,2026-01-01\n",
        headers={"content-type": CSV},
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        "the import was refused, nothing was added: row 1: more columns than an address and a"
        " note; a header row (address,note,...) says which column is which"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '+12125550100,"asked\n+12125550101\n+12125550102,"\n',
            "row 1: a quoted value runs over lines 1-3 (a quote left open?)",
        ),
        (
            '+12125550100\n+12125550101,"asked\n+12125550102\n',
            "row 2: not CSV: unexpected end of data (a quote left open?)",
        ),
        ("address\n" + "x" * 200_000 + "\n", "row 2: not CSV: field larger than field limit"),
    ],
)
def test_a_quote_left_open_takes_no_rows_into_a_note(
    client: TestClient, text: str, problem: str
) -> None:
    answer = client.post("/v1/opt-outs/global/import", content=text, headers={"content-type": CSV})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(
        f"the import was refused, nothing was added: {problem}"
    )
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 404


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
        (
            b"name,phone\nann,+12125550100\n",
            "the import was refused, nothing was added: row 1 looks like a header"
            " but names no 'address' (or 'recipient') column",
        ),
        (
            b"email\nann@example.com\n",
            "the import was refused, nothing was added: row 1 looks like a header"
            " but names no 'address' (or 'recipient') column",
        ),
        (
            b"recipient\nhmac:zzz\n",
            "the import was refused, nothing was added: row 2: 'hmac:zzz' is not a stored"
            " recipient (hmac: and 40 hex digits)",
        ),
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


def test_a_header_naming_a_column_twice_is_refused(client: TestClient) -> None:
    answer = client.post("/v1/opt-outs/global/import", content="address,Address\n+12125550100,x\n")
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        "the import was refused, nothing was added: row 1: the header names 'address' twice"
    )
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 404


def test_stored_recipients_import_as_they_are(client: TestClient) -> None:
    # An entry as an export would give it: the pseudonym, not the address.
    client.put("/v1/opt-outs/global/+12125550100")
    token = client.get("/v1/opt-outs/global/+12125550100").json()["recipient"]
    assert post_import(client, f"address\n{token}\n", name="sender:acme")["added"] == 1
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").json()["recipient"] == token


def test_one_entry_by_its_stored_recipient(client: TestClient) -> None:
    """A recipient copied from an export or a decision names its entry
    (the address behind it is not known), and is never hashed again."""
    client.put("/v1/opt-outs/global/+12125550100")
    token = client.get("/v1/opt-outs/global/+12125550100").json()["recipient"]
    assert client.get(f"/v1/opt-outs/global/{token}").json()["recipient_hint"] == "+1212…0100"
    assert client.get(f"/v1/opt-outs/global/{token.upper()}").json()["recipient"] == token
    added = client.put(f"/v1/opt-outs/sender:acme/{token}")
    assert added.status_code == 201
    assert (added.json()["recipient"], added.json()["recipient_hint"]) == (token, "…")
    assert client.post("/v1/messages", json=sms(sender="acme")).status_code == 403
    assert client.delete(f"/v1/opt-outs/global/{token}").status_code == 204
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 404
    mistyped = client.put("/v1/opt-outs/global/hmac:" + "0" * 39)
    assert mistyped.status_code == 400
    assert "is not a stored recipient" in mistyped.json()["error"]
    found = client.get("/v1/decisions", params={"recipient": token}).json()["decisions"]
    assert [d["recipient"] for d in found] == [token]


def test_import_is_for_admins(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_API_KEYS": keys(aud1t="auditor", r00t="admin")})
    path = "/v1/opt-outs/global/import"
    assert client.post(path, content="+12125550100\n", headers=bearer("aud1t")).status_code == 403
    assert client.post(path, content="+12125550100\n", headers=bearer("r00t")).status_code == 200


# -- export -----------------------------------------------------------------------


def exported(client: TestClient, name: str = "global") -> list[dict[str, str]]:
    answer = client.get(f"/v1/opt-outs/{name}/export")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(answer.text)))


def test_export_gives_every_entry_as_the_import_takes_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PAGE", 2)
    post_import(client, "address,note\n+12125550100,by phone\n+12125550101,\n+12125550102,\n")
    client.put("/v1/opt-outs/global/ann@example.com", json={"note": "by mail"})
    client.put("/v1/opt-outs/promo/+12125550199")
    rows = exported(client)
    assert tuple(rows[0]) == export.OPT_OUT_COLUMNS
    assert len(rows) == 4
    assert [r["recipient"] for r in rows] == sorted(r["recipient"] for r in rows)
    by_hint = {r["recipient_hint"]: r for r in rows}
    assert by_hint["+1212…0100"]["note"] == "by phone"
    assert by_hint["+1212…0100"]["source"] == "import"
    assert by_hint["a…@example.com"]["source"] == "api"
    assert by_hint["+1212…0101"]["added_at"] == "2026-06-02T15:00:00Z"
    # Back in, on another list: the same recipients.
    answer = client.get("/v1/opt-outs/global/export")
    assert post_import(client, answer.text, name="sender:acme")["added"] == 4
    moved = exported(client, "sender:acme")
    assert {(r["recipient"], r["recipient_hint"]) for r in moved} == {
        (r["recipient"], r["recipient_hint"])
        for r in rows  # the hints come along
    }
    acme = client.get("/v1/opt-outs/sender:acme/export")
    assert acme.headers["content-disposition"] == 'attachment; filename="opt-outs-sender-acme.csv"'


def test_export_of_an_empty_list(client: TestClient) -> None:
    answer = client.get("/v1/opt-outs/nobody/export")
    assert answer.text == ",".join(export.OPT_OUT_COLUMNS) + "\r\n"


class FailingStore(MemoryStore):
    """The in-memory store, whose list pages fail from the `fail_from`-th on."""

    def __init__(self, fail_from: int) -> None:
        super().__init__()
        self.pages = 0
        self.fail_from = fail_from

    async def opt_out_page(
        self, list_name: str, cursor: str | None, limit: int
    ) -> tuple[list[OptOutEntry], str | None]:
        self.pages += 1
        if self.pages >= self.fail_from:
            raise StoreUnavailable("redis store: ConnectionError: connection refused")
        return await super().opt_out_page(list_name, cursor, limit)


def test_a_store_that_cannot_be_read_is_503(tmp_path: Path, write_policies: Any) -> None:
    with TestClient(app_with(tmp_path, write_policies, store=FailingStore(1))) as client:
        assert client.get("/v1/opt-outs/global/export").status_code == 503


def test_a_store_failure_mid_stream_cuts_the_export_off(
    tmp_path: Path, write_policies: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PAGE", 1)
    server = Server(app_with(tmp_path, write_policies, store=FailingStore(3)))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for n in range(4):
                assert http.put(f"/v1/opt-outs/global/+1212555010{n}").status_code == 201
            with pytest.raises(httpx.RemoteProtocolError):
                http.get("/v1/opt-outs/global/export")
    finally:
        server.stop()


def test_messages_are_served_during_a_long_import(tmp_path: Path, write_policies: Any) -> None:
    addresses = [f"+1212{n:07d}" for n in range(5_550_000, 5_580_000)]
    server = Server(app_with(tmp_path, write_policies))
    try:
        result: list[httpx.Response] = []
        body = "\n".join(addresses)

        def run_import() -> None:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                result.append(http.post("/v1/opt-outs/global/import", content=body))

        importing = threading.Thread(target=run_import)
        importing.start()
        seen_mid_way = False
        with httpx.Client(base_url=server.url, timeout=120) as http:
            while importing.is_alive() and not seen_mid_way:
                first = http.get(f"/v1/opt-outs/global/{addresses[0]}").status_code
                last = http.get(f"/v1/opt-outs/global/{addresses[-1]}").status_code
                # Entries are only added: the first on and the last not yet means
                # these requests were answered in the middle of the import.
                seen_mid_way = (first, last) == (200, 404)
        importing.join(120)
        assert result and result[0].json()["added"] == len(addresses)
        assert seen_mid_way
    finally:
        server.stop()
