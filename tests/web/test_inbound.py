"""`POST /v1/inbound/twilio`: replies signed by Twilio update the opt-out lists.
Signatures are made with the official Twilio SDK's RequestValidator."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from gateway.clock import FixedClock
from gateway.errors import ConfigError
from gateway.settings import load_settings
from tests.web.conftest import Make, sms
from tests.web.test_auth import keys

URL = "https://gw.example.com/v1/inbound/twilio"
TOKEN = "twilio-auth-token-of-acme"
ACME = "AC" + "a" * 32


def configured(make_client: Make, **inbound: Any) -> TestClient:
    env = {
        "GATEWAY_INBOUND_TWILIO": json.dumps({"auth_token": TOKEN, "url": URL, **inbound}),
        "GATEWAY_SENDERS": json.dumps({"acme": {"accounts": [ACME]}}),
    }
    return make_client(env=env)


def reply(
    client: TestClient, body: str, *, token: str = TOKEN, account: str = ACME, **extra: str
) -> Any:
    form = {
        "From": "+12125550100",
        "To": "+14155550199",
        "Body": body,
        "AccountSid": account,
        # Every message Twilio receives has a sid of its own.
        "MessageSid": "SM" + uuid.uuid4().hex,
        **extra,
    }
    signed = RequestValidator(token).compute_signature(URL, form)
    return client.post("/v1/inbound/twilio", data=form, headers={"X-Twilio-Signature": signed})


def test_stop_opts_out_of_the_sender_and_start_opts_back_in(make_client: Make) -> None:
    client = configured(make_client)
    answer = reply(client, "Stop please", MessageSid="SM" + "1" * 32)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/xml"
    assert answer.text.endswith("<Response></Response>")
    entry = client.get("/v1/opt-outs/sender:acme/+12125550100").json()
    assert entry["source"] == "keyword"
    assert entry["note"] == f'replied "Stop please" (Twilio SM{"1" * 32})'
    refused = client.post("/v1/messages", json=sms(sender="acme"))
    assert refused.status_code == 403
    assert refused.json()["reasons"][0]["code"] == "opted_out"
    # Another sender's messages are not touched by a STOP sent to acme.
    assert client.post("/v1/messages", json=sms(sender="other")).status_code == 201
    assert reply(client, "START").status_code == 200
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 404


def test_a_reply_sent_again_is_applied_once(make_client: Make) -> None:
    """Twilio signs no timestamp: a captured START replayed after a later STOP
    must not take the number off the list again."""
    client = configured(make_client)
    start = {"MessageSid": "SM" + "2" * 32}
    assert reply(client, "STOP").status_code == 200
    assert reply(client, "START", **start).status_code == 200
    assert reply(client, "STOP").status_code == 200
    replayed = reply(client, "START", **start)
    assert replayed.status_code == 200
    assert replayed.text.endswith("<Response></Response>")
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 200
    # The same sid with other words is no retry of Twilio's: nothing changes.
    assert reply(client, "START", MessageSid="SM" + "3" * 32).status_code == 200
    assert reply(client, "STOP", MessageSid="SM" + "3" * 32).status_code == 200
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 404


def test_a_reply_whose_process_died_while_applying_it_is_applied_later(
    make_client: Make, clock: FixedClock
) -> None:
    """Its MessageSid is remembered once the reply is applied: a claim left by
    a process that died lapses in a minute, and the reply is applied then."""
    client = configured(make_client)
    sid = "SM" + "4" * 32
    store = client.app.state.runtime.store
    now_ms = int(clock.now().timestamp() * 1000)
    assert client.portal is not None
    client.portal.call(store.idempotency_begin, f"inbound:twilio:{sid}", "fp", now_ms, 60_000)
    assert reply(client, "STOP", MessageSid=sid).status_code == 200
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 404
    clock.advance(timedelta(seconds=61))
    assert reply(client, "STOP", MessageSid=sid).status_code == 200
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 200


@pytest.mark.parametrize("body", ["HELP", "Thanks, see you at 5", "I will come by the store"])
def test_other_replies_change_nothing(make_client: Make, body: str) -> None:
    client = configured(make_client)
    assert reply(client, body).status_code == 200
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 404


def test_twilios_own_reading_wins(make_client: Make) -> None:
    client = configured(make_client)
    assert reply(client, "no more of this", OptOutType="STOP").status_code == 200
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 200


def test_the_list_is_configured(make_client: Make) -> None:
    client = configured(make_client, list="global")
    reply(client, "UNSUBSCRIBE")
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 200
    other = configured(make_client)
    reply(other, "退订", account="AC" + "b" * 32)  # an account no sender names
    assert other.get("/v1/opt-outs/sender:default/+12125550100").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Twilio-Signature": "bm90IGl0"}, {"X-Twilio-Signature": ""}],
)
def test_an_unsigned_or_missigned_reply_is_refused(make_client: Make, headers: Any) -> None:
    client = configured(make_client)
    answer = client.post(
        "/v1/inbound/twilio", data={"From": "+12125550100", "Body": "STOP"}, headers=headers
    )
    assert answer.status_code == 403
    assert client.get("/v1/opt-outs/sender:acme/+12125550100").status_code == 404
    forged = reply(client, "STOP", token="someone-elses-token")
    assert forged.status_code == 403


def test_not_configured_is_404(client: TestClient) -> None:
    answer = client.post("/v1/inbound/twilio", data={"Body": "STOP"})
    assert answer.status_code == 404
    assert answer.json() == {"error": "inbound Twilio replies are not configured"}


def test_a_reply_from_no_phone_number_is_400(make_client: Make) -> None:
    client = configured(make_client)
    assert reply(client, "STOP", From="not-a-number").status_code == 400


def test_needs_no_api_key(make_client: Make) -> None:
    env = {
        "GATEWAY_INBOUND_TWILIO": json.dumps({"auth_token": TOKEN, "url": URL}),
        "GATEWAY_API_KEYS": keys(r00t="admin"),
    }
    client = make_client(env=env)
    assert reply(client, "STOP").status_code == 200


@pytest.mark.parametrize(
    ("inbound", "error"),
    [
        ({"auth_token": "t", "url": URL, "list": "sender:{who}"}, "may hold {sender}"),
        ({"auth_token": "t", "url": URL, "list": "no spaces {sender}"}, "does not make a list"),
        ({"auth_token": "t", "url": "gw.example.com"}, "url"),
        ({"url": URL}, "auth_token"),
    ],
)
def test_bad_configuration_is_one_line(inbound: dict[str, str], error: str) -> None:
    environ = {"GATEWAY_INBOUND_TWILIO": json.dumps(inbound)}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert error in str(caught.value) and "\n" not in str(caught.value)


_ONE: dict[int, TestClient] = {}  # one gateway for every example of the property


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.dictionaries(
        st.sampled_from(["From", "Body", "AccountSid", "OptOutType", "MessageSid", "X"]),
        st.text(max_size=30),
        max_size=5,
    )
)
def test_any_signed_form_is_answered_below_500(make_client: Make, form: dict[str, str]) -> None:
    client = _ONE.get(id(make_client)) or _ONE.setdefault(id(make_client), configured(make_client))
    signed = RequestValidator(TOKEN).compute_signature(URL, form)
    answer = client.post("/v1/inbound/twilio", data=form, headers={"X-Twilio-Signature": signed})
    assert answer.status_code in (200, 400), answer.text
