"""One-click unsubscribe (RFC 8058): a sender asks for a link, a mail client
posts to it, and the next message to that address is refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import Make
from tests.web.test_auth import bearer, keys

ANN = "Ann@Example.com"  # the domain is not case-sensitive, the local part may be


def email(**fields: Any) -> dict[str, Any]:
    return {
        "channel": "email",
        "to": ANN,
        "subject": "Sale",
        "body": "Half price",
        "category": "marketing",
    } | fields


def link(client: TestClient, **asked: Any) -> dict[str, Any]:
    answer = client.post("/v1/unsubscribe/links", json={"address": ANN} | asked)
    assert answer.status_code == 200, answer.text
    made: dict[str, Any] = answer.json()
    return made


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_a_one_click_post_opts_the_address_out(client: TestClient) -> None:
    assert client.post("/v1/messages", json=email()).status_code == 201
    made = link(client)
    assert made["list"] == "global" and made["recipient_hint"] == "a…@example.com"
    assert made["headers"] == {
        "List-Unsubscribe": f"<{made['url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    # What a mail client sends (RFC 8058 3.1): multipart/form-data, no credentials.
    answer = client.post(path_of(made["url"]), files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200
    assert "a…@example.com is unsubscribed (global)" in answer.text
    entry = client.get("/v1/opt-outs/global/Ann@example.com").json()
    assert entry["source"] == "unsubscribe" and "RFC 8058" in entry["note"]
    refused = client.post("/v1/messages", json=email(to="Ann@EXAMPLE.COM"))
    assert refused.status_code == 403
    # A local part in other letters is the same mailbox: refused too.
    assert client.post("/v1/messages", json=email(to="ANN@example.com")).status_code == 403
    assert refused.json()["reasons"][0]["code"] == "opted_out"


def test_a_link_for_a_sender_list_and_a_form_encoded_post(client: TestClient) -> None:
    made = link(client, list="sender:acme")
    answer = client.post(
        path_of(made["url"]),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert client.get("/v1/opt-outs/sender:acme/Ann@example.com").status_code == 200
    assert client.get("/v1/opt-outs/global/Ann@example.com").status_code == 404


CONSENT = (
    "rules:\n  - id: casl\n    type: consent\n    lists: ['consent:{sender}', consent:all]\n"
    "    match: {channel: email, category: marketing}\n"
)


def test_a_link_to_a_consent_list_withdraws_consent_never_grants_it(make_client: Make) -> None:
    """A list a consent rule reads holds consents: a link to it (which any
    sender may make) takes the address off, and never puts it on."""
    client = make_client(CONSENT)
    assert client.post("/v1/messages", json=email()).status_code == 403  # no consent
    for name in ("consent:all", "consent:acme"):
        made = link(client, list=name)
        answer = client.post(path_of(made["url"]), content=b"List-Unsubscribe=One-Click")
        assert answer.status_code == 200
        assert f"a…@example.com no longer consents ({name})" in answer.text
        assert client.get(f"/v1/consents/{name}/Ann@example.com").status_code == 404
    assert client.post("/v1/messages", json=email()).status_code == 403  # still none
    client.put("/v1/consents/consent:all/Ann@example.com")
    assert client.post("/v1/messages", json=email()).status_code == 201
    made = link(client, list="consent:all")
    client.post(path_of(made["url"]), content=b"List-Unsubscribe=One-Click")
    refused = client.post("/v1/messages", json=email())
    assert refused.json()["reasons"][0]["code"] == "no_consent"


def test_opening_the_link_shows_a_button_and_unsubscribes_nobody(client: TestClient) -> None:
    made = link(client)
    page = client.get(path_of(made["url"]))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    assert 'method="post"' in page.text
    assert client.get("/v1/opt-outs/global/Ann@example.com").status_code == 404


def test_the_configured_url_is_the_one_in_links(make_client: Make) -> None:
    url = "https://mail-gw.example.com/v1/unsubscribe"
    client = make_client(unsubscribe={"url": url, "list": "newsletter"})
    made = link(client)
    assert made["url"].startswith("https://mail-gw.example.com/v1/unsubscribe?token=")
    assert made["list"] == "newsletter"


@pytest.mark.parametrize(
    ("target", "body", "status", "field"),
    [
        ("/v1/unsubscribe", b"List-Unsubscribe=One-Click", 400, "token"),
        ("/v1/unsubscribe?token=abc.def", b"List-Unsubscribe=One-Click", 400, "token"),
        ("/v1/unsubscribe?token={token}x", b"List-Unsubscribe=One-Click", 400, "token"),
        ("/v1/unsubscribe?token={token}", b"", 400, "List-Unsubscribe"),
        (
            "/v1/unsubscribe?token={token}",
            b"List-Unsubscribe=One-Click&" + b"x" * 20_000,
            413,
            "body",
        ),
    ],
)
def test_bad_one_click_requests_change_nothing(
    client: TestClient, target: str, body: bytes, status: int, field: str
) -> None:
    token = urlsplit(link(client)["url"]).query.removeprefix("token=")
    answer = client.post(
        target.format(token=token),
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == status
    assert field in answer.json()["fields"]
    assert client.get("/v1/opt-outs/global/Ann@example.com").status_code == 404


@pytest.mark.parametrize(
    ("asked", "field"),
    [
        ({"address": "not an address!"}, "address"),
        ({"address": "hmac:" + "a" * 40}, "address"),  # the link goes to a plain address
        ({"address": 5}, "address"),
        ({"address": ANN, "list": "no spaces"}, "list"),
        ({"address": ANN, "extra": 1}, "extra"),
    ],
)
def test_bad_link_requests_are_400(
    client: TestClient, asked: dict[str, Any], field: str | None
) -> None:
    answer = client.post("/v1/unsubscribe/links", json=asked)
    assert answer.status_code == 400
    if field is not None:
        assert field in answer.json()["fields"]


def test_links_are_for_senders_and_one_click_needs_no_key(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_API_KEYS": keys(s3cret="sender", aud1t="auditor")})
    ask = {"address": ANN}
    assert client.post("/v1/unsubscribe/links", json=ask).status_code == 401
    assert (
        client.post("/v1/unsubscribe/links", json=ask, headers=bearer("aud1t")).status_code == 403
    )
    made = client.post("/v1/unsubscribe/links", json=ask, headers=bearer("s3cret"))
    assert made.status_code == 200
    url = path_of(made.json()["url"])
    assert client.get(url).status_code == 200
    answer = client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200
