"""Adapters and the relay without I/O; the drop-in routes in process for the
default sandbox routes, gateway keys and a store that is down."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from starlette.testclient import TestClient

from gateway.adapters.base import Context, Incoming
from gateway.adapters.sendgrid import ADAPTER as SENDGRID
from gateway.errors import InputError
from gateway.relay import context, credential_digests, forwardable, identify
from gateway.settings import Route, Settings
from gateway.upstream.http import hop_by_hop
from tests.web.conftest import Make

CTX = Context("sendgrid", "acme", "marketing")
TWILIO_PATH = "/2010-04-01/Accounts/AC1/Messages.json"


def sendgrid(data: dict[str, object]) -> Incoming:
    return Incoming("POST", "/v3/mail/send", (), json.dumps(data).encode())


def test_sendgrid_reads_every_recipient_with_its_subject() -> None:
    incoming = sendgrid(
        {
            "personalizations": [
                {"to": [{"email": "A@Example.com"}], "cc": [{"email": "b@example.com"}]},
                {"to": [{"email": "c@example.com"}], "subject": "Own", "bcc": []},
            ],
            "from": {"email": "n@shop.example"},
            "subject": "Top",
            "content": [{"type": "text/plain", "value": "x"}, {"type": "text/html", "value": "y"}],
            "categories": ["weekly"],
        }
    )
    items = SENDGRID.items(incoming, CTX)
    assert [i.message.recipient.address for i in items] == [
        "a@example.com",  # the address as one mailbox: lower case
        "b@example.com",
        "c@example.com",
    ]
    assert [i.message.subject for i in items] == ["Top", "Top", "Own"]
    assert items[0].message.body == "x\ny" and items[0].message.tags == ("weekly",)


def test_sendgrid_held_body_sends_to_one_recipient_as_to() -> None:
    incoming = sendgrid(
        {
            "personalizations": [{"to": [{"email": "a@x.io"}], "cc": [{"email": "b@x.io"}]}],
            "from": {"email": "n@x.io"},
            "subject": "s",
            "content": [{"type": "text/plain", "value": "x"}],
        }
    )
    held = json.loads(SENDGRID.held_body(incoming, 1))
    assert held["personalizations"] == [{"to": [{"email": "b@x.io"}]}]


def test_sendgrid_forward_body_is_the_original_bytes_when_nobody_is_dropped() -> None:
    incoming = Incoming("POST", "/v3/mail/send", (), b'{"personalizations": [{"to": [{}]}]}')
    assert SENDGRID.forward_body(incoming, [0]) == (incoming.body, {})


def test_credentials_are_matched_by_the_hash_of_their_secret() -> None:
    basic = "Basic " + base64.b64encode(b"AC1:tok").decode()
    assert hashlib.sha256(b"AC1:tok").hexdigest() in credential_digests(basic)
    assert hashlib.sha256(b"SG.k").hexdigest() in credential_digests("Bearer SG.k")
    assert credential_digests("Basic !!notbase64") == {
        hashlib.sha256(b"Basic !!notbase64").hexdigest()
    }
    assert credential_digests(None) == set()


def test_sender_by_credential_then_account_then_route_default() -> None:
    digest = hashlib.sha256(b"SG.k").hexdigest()
    settings = Settings.model_validate(
        {"senders": {"acme": {"credentials": [digest]}, "beta": {"accounts": ["AC9"]}}}
    )
    route = Route(name="r", adapter="twilio", upstream="sandbox", default_sender="fallback")
    auth = (("authorization", "Bearer SG.k"),)
    assert identify(settings, route, Incoming("POST", "/", auth, b"")) == "acme"
    by_account = Incoming("POST", "/", (), b"", {"account": "AC9"})
    assert identify(settings, route, by_account) == "beta"
    assert identify(settings, route, Incoming("POST", "/", (), b"")) == "fallback"


def test_headers_named_by_connection_are_hop_by_hop() -> None:
    """RFC 9110 7.6.1: what Connection lists belongs to this connection alone,
    in requests going upstream and in answers coming back."""
    dropped = hop_by_hop(["close, X-Trace-Hop ,", "Upgrade"])  # the Connection values
    assert {"x-trace-hop", "close", "connection", "keep-alive", "upgrade"} <= dropped
    assert "" not in dropped and "authorization" not in dropped
    assert hop_by_hop([]) == hop_by_hop(["", " , "])  # nothing listed: the fixed set


def test_gateway_headers_are_read_and_never_forwarded() -> None:
    headers = [
        ("authorization", "Basic x"),
        ("x-message-category", "alerts"),
        ("X-Gateway-Key", "k"),
        ("X-Message-Campaign", "spring"),  # every X-Message-* is the gateway's
        ("connection", "keep-alive, X-Hop"),
        ("x-hop", "named by Connection: this connection's only"),
        ("i-twilio-idempotency-token", "t"),
    ]
    assert forwardable(headers) == (
        ("authorization", "Basic x"),
        ("i-twilio-idempotency-token", "t"),
    )
    route = Route(name="r", adapter="twilio", upstream="sandbox")
    ctx = context(Settings(), route, "acme", {"x-message-category": "alerts"})
    assert (ctx.category, ctx.sender, ctx.timezone) == ("alerts", "acme", None)
    # Case-folded as rules compare them: "Marketing" is held to marketing's rules.
    shouted = context(
        Settings(), route, "acme", {"x-message-category": "Alerts", "x-message-tags": "OTP, Eu"}
    )
    assert (shouted.category, shouted.tags) == ("alerts", ("otp", "eu"))
    for bad in ({"x-recipient-timezone": "Mars/Base"}, {"x-message-tags": "a b"}):
        with pytest.raises(InputError):
            context(Settings(), route, "acme", bad)


def test_default_config_serves_every_provider_from_the_sandbox(client: TestClient) -> None:
    form = {"To": "+12125550100", "From": "+12125550199", "Body": "Hello"}
    twilio = client.post(TWILIO_PATH, data=form, headers={"X-Message-Category": "transactional"})
    assert twilio.status_code == 201 and twilio.json()["sid"].startswith("SM")
    mail = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "n@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "x"}],
    }
    sendgrid = client.post("/v3/mail/send", json=mail)
    assert (sendgrid.status_code, sendgrid.content) == (202, b"")
    fcm = client.post("/v1/projects/p1/messages:send", json={"message": {"token": "t-1"}})
    assert fcm.json()["name"].startswith("projects/p1/messages/")
    inbox = client.get("/v1/sandbox/messages").json()["messages"]
    assert inbox[2]["id"] == twilio.json()["sid"]
    assert inbox[1]["id"] == sendgrid.headers["x-message-id"]


def test_unconfigured_provider_is_404_in_its_shape(make_client: Make) -> None:
    client = make_client(
        env={"GATEWAY_ROUTES": "[{name: native, adapter: native, upstream: sandbox}]"}
    )
    answer = client.post("/v3/mail/send", json={})
    assert answer.status_code == 404
    assert "no sendgrid route" in answer.json()["errors"][0]["message"]


def test_gateway_key_comes_in_its_own_header(make_client: Make) -> None:
    digest = hashlib.sha256(b"gw-key").hexdigest()
    client = make_client(env={"GATEWAY_API_KEYS": f"[{{sha256: {digest}, role: sender}}]"})
    form = {"To": "+12125550100", "From": "+12125550199", "Body": "Hi"}
    basic = {"Authorization": "Basic " + base64.b64encode(b"AC1:tok").decode()}
    refused = client.post(TWILIO_PATH, data=form, headers=basic)
    # In Twilio's shape: the sender's SDK reads nothing else.
    assert refused.status_code == 401 and "X-Gateway-Key" in refused.json()["message"]
    assert refused.json()["code"] == 20401
    assert refused.headers["x-gateway-decision"] == "reject"
    fcm = client.post("/v1/projects/p/messages:send", json={})
    assert fcm.status_code == 401 and fcm.json()["error"]["status"] == "UNAUTHENTICATED"
    allowed = client.post(TWILIO_PATH, data=form, headers=basic | {"X-Gateway-Key": "gw-key"})
    assert allowed.status_code == 201


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_another_method_is_405_in_the_providers_shape(client: TestClient, method: str) -> None:
    twilio = client.request(method, TWILIO_PATH)
    assert (twilio.status_code, twilio.json()["code"]) == (405, 20405)
    assert twilio.headers["allow"] == "POST"
    assert twilio.headers["x-gateway-decision"] == "reject"
    sendgrid = client.request(method, "/v3/mail/send")
    assert sendgrid.status_code == 405 and "POST" in sendgrid.json()["errors"][0]["message"]
    fcm = client.request(method, "/v1/projects/p/messages:send")
    assert fcm.status_code == 405 and fcm.json()["error"]["code"] == 405


def test_store_down_is_503_in_the_providers_shape_and_nothing_is_sent(make_client: Make) -> None:
    client = make_client(
        env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0", "GATEWAY_AUDIT_KEY": "k" * 32}
    )
    form = {"To": "+12125550100", "From": "+12125550199", "Body": "Hi"}
    answer = client.post(TWILIO_PATH, data=form)
    assert answer.status_code == 503
    assert answer.json()["code"] == 20503 and answer.headers["retry-after"] == "1"
    assert client.get("/v1/sandbox/messages").json()["messages"] == []
    refused = client.get("/v1/decisions", params={"code": "store_unavailable"}).json()
    assert answer.headers["x-gateway-decision-id"] == refused["decisions"][0]["decision_id"]
    # With an idempotency key, which cannot be claimed either: the same refusal.
    keyed = client.post(TWILIO_PATH, data=form, headers={"I-Twilio-Idempotency-Token": "t1"})
    assert keyed.status_code == 503
    again = client.get("/v1/decisions", params={"code": "store_unavailable"}).json()
    assert keyed.headers["x-gateway-decision-id"] == again["decisions"][0]["decision_id"]
    assert len(again["decisions"]) == 2
