"""API keys with roles: 401 without a key, 403 for the wrong role."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from gateway.clock import FixedClock
from tests.web.conftest import BASE_RULES, Make, sms


def keys(**roles: str) -> str:
    """The api_keys setting for keys named by their role."""
    return json.dumps(
        [
            {"sha256": hashlib.sha256(key.encode()).hexdigest(), "role": role}
            for key, role in roles.items()
        ]
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make(make_client: Make) -> TestClient:
    return make_client(
        env={"GATEWAY_API_KEYS": keys(s3cret="sender", aud1t="auditor", r00t="admin")}
    )


def test_no_key_is_401(make_client: Make) -> None:
    client = make(make_client)
    answer = client.post("/v1/messages", json=sms())
    assert answer.status_code == 401
    assert answer.json() == {"error": "an API key is needed (Authorization: Bearer ...)"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert answer.headers["X-Gateway-Decision"] == "reject"  # nothing was sent
    wrong = client.post("/v1/messages", json=sms(), headers=bearer("wrong"))
    assert wrong.status_code == 401
    assert wrong.json() == {
        "error": "the API key given (Authorization: Bearer ...) is not a key of this gateway"
    }
    assert client.post("/v1/messages", json=sms(), headers={"authorization": "wrong"}).json() == {
        "error": "the API key given (Authorization: Bearer ...) is not a key of this gateway"
    }
    assert client.get("/healthz").status_code == 200  # health stays open


def test_roles(make_client: Make) -> None:
    client = make(make_client)
    sent = client.post("/v1/messages", json=sms(), headers=bearer("s3cret"))
    assert sent.status_code == 201
    assert client.get("/v1/decisions", headers=bearer("s3cret")).status_code == 403
    assert client.get("/v1/decisions", headers=bearer("aud1t")).status_code == 200
    refused = client.put("/v1/opt-outs/global/+12125550100", headers=bearer("aud1t"))
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "the auditor role may not PUT /v1/opt-outs/global/+12125550100"
    }
    assert client.put("/v1/opt-outs/global/+12125550100", headers=bearer("r00t")).status_code == 201
    opted_out = client.post("/v1/messages", json=sms(), headers=bearer("r00t"))
    assert opted_out.json()["reasons"][0]["code"] == "opted_out"


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/export", "/v1/audit/verify"])
def test_the_trail_is_for_auditors(make_client: Make, path: str) -> None:
    client = make(make_client)
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer("s3cret")).status_code == 403
    assert client.get(path, headers=bearer("aud1t")).status_code == 200


BOUND = [
    # A sender named twice is one: its held messages are listed once.
    {"sha256": hashlib.sha256(b"acme-key").hexdigest(), "role": "sender", "senders": ["acme"] * 2},
    {"sha256": hashlib.sha256(b"beta-key").hexdigest(), "role": "sender", "senders": ["beta"]},
    {"sha256": hashlib.sha256(b"r00t").hexdigest(), "role": "admin"},
]
TWILIO = "/2010-04-01/Accounts/ACbeta/Messages.json"
TWILIO_FORM = {"To": "+12125550100", "From": "+12125550199", "Body": "Hello"}


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def basic(user: str, password: str, padded: bool = True) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return "Basic " + (token if padded else token.rstrip("="))


def bound(make_client: Make) -> TestClient:
    """Two sender keys, each bound to its sender, and an admin key; the
    account ACbeta is beta's, and each sender has a Twilio credential."""
    senders = {
        "acme": {"credentials": [digest("ACacme:tok-a")]},
        "beta": {"accounts": ["ACbeta"], "credentials": [digest("ACbeta:tok-b")]},
    }
    env = {"GATEWAY_API_KEYS": json.dumps(BOUND), "GATEWAY_SENDERS": json.dumps(senders)}
    rules = BASE_RULES + CONSENT
    return make_client(rules, env=env)


CONSENT = """
  - id: email-consent
    type: consent
    match: {channel: email}
    lists: ["consent:{sender}"]
"""


def test_a_bound_key_sends_as_its_sender_only(make_client: Make) -> None:
    client = bound(make_client)
    acme = bearer("acme-key")
    sent = client.post("/v1/messages", json=sms(), headers=acme)
    assert sent.status_code == 201
    record = client.get(f"/v1/decisions/{sent.json()['decision_id']}", headers=bearer("r00t"))
    assert record.json()["sender"] == "acme"  # a message naming no sender is the key's
    for path in ("/v1/messages", "/v1/check"):
        refused = client.post(path, json=sms(sender="beta"), headers=acme)
        assert refused.status_code == 403
        assert refused.json() == {"error": "this key acts for acme only, not for sender 'beta'"}
        assert refused.headers["X-Gateway-Decision"] == "reject"
    decisions = client.get("/v1/decisions", headers=bearer("r00t")).json()["decisions"]
    assert len(decisions) == 1  # the refused ones were never decided
    assert client.post("/v1/messages", json=sms(sender="beta"), headers=bearer("r00t")).is_success


def test_a_bound_key_sends_drop_in_as_its_sender_only(make_client: Make) -> None:
    client = bound(make_client)
    refused = client.post(TWILIO, data=TWILIO_FORM, headers={"X-Gateway-Key": "acme-key"})
    assert refused.status_code == 403
    assert refused.json()["code"] == 20403  # Twilio's shape, which its SDK raises
    assert "not for sender 'beta'" in refused.json()["message"]
    sent = client.post(TWILIO, data=TWILIO_FORM, headers={"X-Gateway-Key": "beta-key"})
    assert sent.status_code == 201
    other = "/2010-04-01/Accounts/ACother/Messages.json"  # no sender's account: the key's
    sent = client.post(other, data=TWILIO_FORM, headers={"X-Gateway-Key": "acme-key"})
    record = client.get(
        f"/v1/decisions/{sent.headers['X-Gateway-Decision-Id']}", headers=bearer("r00t")
    )
    assert record.json()["sender"] == "acme"


def test_a_bound_key_sees_and_cancels_its_senders_held_messages_only(
    make_client: Make, clock: FixedClock
) -> None:
    client = bound(make_client)
    clock.set(datetime(2026, 6, 2, 6, 0, tzinfo=UTC))  # 02:00 in New York: held till 08:00
    held = {
        key: client.post("/v1/messages", json=sms(), headers=bearer(key)).json()["decision_id"]
        for key in ("acme-key", "beta-key")
    }
    acme = bearer("acme-key")
    listed = client.get("/v1/deferred", headers=acme).json()["deferred"]
    assert [(i["id"], i["sender"]) for i in listed] == [(held["acme-key"], "acme")]
    assert len(client.get("/v1/deferred", headers=bearer("r00t")).json()["deferred"]) == 2
    assert client.get("/v1/deferred?sender=beta", headers=acme).status_code == 403
    theirs = f"/v1/deferred/{held['beta-key']}"
    assert client.get(theirs, headers=acme).status_code == 404  # as if it did not exist
    assert client.delete(theirs, headers=acme).status_code == 404
    assert client.get(theirs, headers=bearer("beta-key")).json()["status"] == "pending"
    mine = client.delete(f"/v1/deferred/{held['acme-key']}", headers=acme)
    assert mine.json()["status"] == "cancelled"


def test_a_bound_key_reads_no_sandbox_and_links_no_other_senders_list(make_client: Make) -> None:
    client = bound(make_client)
    acme = bearer("acme-key")
    inbox = client.get("/v1/sandbox/messages", headers=acme)
    assert inbox.status_code == 403 and "every sender's" in inbox.json()["error"]
    assert client.get("/v1/sandbox/messages", headers=bearer("r00t")).status_code == 200
    link = {"address": "ann@example.com", "list": "sender:beta"}
    assert client.post("/v1/unsubscribe/links", json=link, headers=acme).status_code == 403
    # A rule names beta's consent list so: a link would withdraw beta's consents.
    theirs = client.post(
        "/v1/unsubscribe/links", json=link | {"list": "consent:beta"}, headers=acme
    )
    assert theirs.status_code == 403
    assert "rule 'email-consent' names list 'consent:beta' for another sender" in theirs.text
    for name in ("sender:acme", "consent:acme", "global"):
        made = client.post("/v1/unsubscribe/links", json=link | {"list": name}, headers=acme)
        assert made.status_code == 200


def test_a_bound_key_cannot_send_for_another_sender_by_any_credential(make_client: Make) -> None:
    client = bound(make_client)
    key = {"X-Gateway-Key": "acme-key"}
    # Its own credential, but beta's account in the path.
    mixed = client.post(
        TWILIO, data=TWILIO_FORM, headers=key | {"Authorization": basic("ACacme", "tok-a")}
    )
    assert mixed.status_code == 403 and "not for sender 'beta'" in mixed.json()["message"]
    other = "/2010-04-01/Accounts/ACother/Messages.json"
    # Beta's credential, written as a lenient server would still read it.
    for written in (
        basic("ACbeta", "tok-b", padded=False),
        basic("ACbeta", "tok-b").replace(" ", "\t"),
    ):
        answer = client.post(other, data=TWILIO_FORM, headers=key | {"Authorization": written})
        assert answer.status_code == 403, written
    twice = [("X-Gateway-Key", "acme-key"), ("Authorization", basic("ACacme", "tok-a"))]
    twice.append(("Authorization", basic("ACbeta", "tok-b")))
    answer = client.post(other, data=TWILIO_FORM, headers=twice)
    assert answer.status_code == 400 and "Authorization is given more than once" in answer.text
    decisions = client.get("/v1/decisions", headers=bearer("r00t")).json()["decisions"]
    assert decisions == []


def test_without_keys_a_web_page_of_another_origin_may_not_change_anything(
    client: TestClient,
) -> None:
    # A page may post a form or a body of no declared type without the browser
    # asking first; with no key to hold it back it could send and opt out.
    page = {"origin": "http://evil.example"}
    for answer in (
        client.post("/v1/messages", content=json.dumps(sms()), headers=page),
        client.put("/v1/opt-outs/global/+12125550100", headers=page),
        client.post("/v1/policies/reload", headers=page),
    ):
        assert answer.status_code == 403
        assert answer.json()["error"] == (
            "a web page (http://evil.example) may not call a gateway that has no API keys:"
            " configure api_keys"
        )
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 404
    assert client.get("/v1/sandbox/messages").json()["messages"] == []
    # Reading stays open, and so do the gateway's own pages and other clients.
    assert client.get("/v1/policies", headers=page).status_code == 200
    own = {"origin": "http://testserver"}
    assert client.post("/v1/messages", json=sms(), headers=own).status_code == 201
    assert client.post("/v1/messages", json=sms()).status_code == 201
