"""The official Twilio SDK, pointed at the gateway, against a real stub upstream."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.adapters.conftest import Live, StartLive, header

ACCOUNT, TOKEN = "AC" + "0" * 32, "secret-token"
PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
FORM = "application/x-www-form-urlencoded"
TO, FROM = "+12125550100", "+12125550199"
NIGHT_NY = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)  # 02:00 in New York


OPEN: list[TwilioHttpClient] = []


@pytest.fixture(autouse=True)
def close_sessions() -> Iterator[None]:
    """The SDK pools connections in a session that is never closed on its own."""
    yield
    while OPEN:
        session = OPEN.pop().session
        if session is not None:
            session.close()


class HeaderClient(TwilioHttpClient):
    """How a sender adds the gateway's headers to what the SDK sends."""

    def __init__(self, extra: dict[str, str]) -> None:
        super().__init__()
        self.extra = extra
        self.answer: Any = None  # the last answer, as the SDK saw it
        OPEN.append(self)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["headers"] = dict(kwargs.get("headers") or {}) | self.extra
        self.answer = super().request(method, url, *args, **kwargs)
        return self.answer


def last_basic() -> str:
    return "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()


def twilio(live: Live, **headers: str) -> Client:
    client = Client(ACCOUNT, TOKEN, http_client=HeaderClient(headers))
    client.api.base_url = live.url  # the one line a sender changes
    return client


def send(client: Client, body: str = "Hello") -> Any:
    return client.messages.create(to=TO, from_=FROM, body=body)


def last_headers(client: Client) -> dict[str, str]:
    assert isinstance(client.http_client, HeaderClient)
    response = client.http_client.answer
    return {k.lower(): v for k, v in response.headers.items()}


def test_allowed_message_goes_upstream_with_the_senders_credentials(live: Live) -> None:
    client = twilio(live)
    message = send(client)
    assert (message.sid, message.status) == ("SM123", "queued")
    received = live.stub.received[0]
    assert received["path"] == PATH
    assert parse_qs(received["body"].decode()) == {"To": [TO], "From": [FROM], "Body": ["Hello"]}
    assert header(received, "Authorization") == last_basic()
    headers = last_headers(client)
    assert headers["x-gateway-decision"] == "allow"
    assert headers["x-upstream"] == "stub"
    record = live.decision(headers["x-gateway-decision-id"])
    assert (record["route"], record["channel"], record["sender"]) == ("twilio", "sms", "default")
    assert record["upstream"]["message_id"] == "SM123"


def test_opted_out_recipient_raises_21610_with_the_reason_and_rule(live: Live) -> None:
    live.opt_out(TO)
    client = twilio(live)
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    error = raised.value
    assert (error.status, error.code) == (400, 21610)
    assert "opted_out" in error.msg and "global-opt-out" in error.msg
    assert error.details["reasons"][0]["code"] == "opted_out"
    assert last_headers(client)["x-gateway-decision"] == "reject"
    assert live.stub.received == []


def test_frequency_cap_raises_20429_with_retry_after(live: Live) -> None:
    client = twilio(live)
    send(client)
    send(client)
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.status, raised.value.code) == (429, 20429)
    assert "marketing-sms-caps" in raised.value.msg
    assert int(last_headers(client)["retry-after"]) > 0
    assert len(live.stub.received) == 2


def test_other_refusal_is_a_400_twilio_error(live: Live) -> None:
    with pytest.raises(TwilioRestException) as raised:
        send(twilio(live), "guaranteed returns for you")
    assert (raised.value.status, raised.value.code) == (400, 30007)
    assert "banned_term" in raised.value.msg and "finance-claims" in raised.value.msg


def test_what_fills_a_content_template_is_judged(live: Live) -> None:
    """The template's own text stays with Twilio; ContentVariables fill it and
    are in the request, so a banned term there refuses the message."""
    client = twilio(live)
    variables = json.dumps({"1": "Ann", "2": "guaranteed returns for you"})
    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=TO, from_=FROM, content_sid="HX123", content_variables=variables)
    assert (raised.value.status, raised.value.code) == (400, 30007)
    assert "finance-claims" in raised.value.msg
    message = client.messages.create(
        to=TO, from_=FROM, content_sid="HX123", content_variables=json.dumps({"1": "Ann"})
    )
    assert message.sid == "SM123"
    assert parse_qs(live.stub.received[0]["body"].decode())["ContentSid"] == ["HX123"]


def test_gateway_headers_steer_the_decision_and_are_not_forwarded(live: Live) -> None:
    live.opt_out(TO)
    client = twilio(live, **{"X-Message-Category": "transactional", "X-Message-Tags": "otp"})
    assert send(client).sid == "SM123"
    forwarded = {k.lower() for k in live.stub.received[0]["headers"]}
    assert not forwarded & {"x-message-category", "x-message-tags"}
    record = live.decision(last_headers(client)["x-gateway-decision-id"])
    assert record["category"] == "transactional"


def test_deferred_send_is_scheduled_then_resent_as_it_was(live: Live) -> None:
    live.clock.set(NIGHT_NY)
    client = twilio(live)
    message = send(client, "Night sale")
    assert message.status == "scheduled"
    assert message.sid == last_headers(client)["x-gateway-decision-id"]
    assert last_headers(client)["x-gateway-decision"] == "defer"
    assert live.http.get(f"/v1/deferred/{message.sid}").json()["status"] == "pending"
    assert live.stub.received == []
    live.clock.set(datetime(2026, 6, 2, 12, 0, 1, tzinfo=UTC))  # 08:00:01 in New York
    fate = live.deferred_fate(message.sid)
    assert (fate["status"], fate["result"]["message_id"]) == ("sent", "SM123")
    received = live.stub.received[0]
    assert received["path"] == PATH
    assert parse_qs(received["body"].decode())["Body"] == ["Night sale"]
    assert header(received, "Authorization") == last_basic()


def test_upstream_refusal_comes_back_unchanged_and_is_not_counted(live: Live) -> None:
    live.stub.status = 400
    live.stub.answer = {"code": 21211, "message": "upstream says no", "status": 400}
    client = twilio(live)
    for _ in range(3):
        with pytest.raises(TwilioRestException) as raised:
            send(client)
        assert (raised.value.code, raised.value.msg.endswith("upstream says no")) == (21211, True)
    record = live.decision(last_headers(client)["x-gateway-decision-id"])
    assert record["reasons"][-1]["code"] == "upstream_error"
    live.stub.status, live.stub.answer = 201, {"sid": "SM9", "status": "queued"}
    send(client)
    send(client)
    with pytest.raises(TwilioRestException):
        send(client)


def test_unreachable_upstream_is_502_in_twilio_shape_and_not_counted(
    start_live: StartLive,
) -> None:
    live = start_live(upstream="http://127.0.0.1:1")
    client = twilio(live)
    for _ in range(3):
        with pytest.raises(TwilioRestException) as raised:
            send(client)
        assert (raised.value.status, raised.value.code) == (502, 20502)
    record = live.decision(last_headers(client)["x-gateway-decision-id"])
    assert record["reasons"][-1]["code"] == "upstream_error"


def test_timeout_is_504_and_keeps_the_count(start_live: StartLive) -> None:
    live = start_live(env={"GATEWAY_UPSTREAM_READ_TIMEOUT": "0.3"})
    live.stub.delay = 1.0
    client = twilio(live)
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.status, raised.value.code) == (504, 20504)
    record = live.decision(last_headers(client)["x-gateway-decision-id"])
    assert record["reasons"][-1]["code"] == "upstream_unknown"
    live.stub.delay = 0
    send(client)
    with pytest.raises(TwilioRestException) as capped:
        send(client)
    assert capped.value.code == 20429


def test_an_answer_that_is_not_http_never_shows_the_credentials(start_live: StartLive) -> None:
    """The client's error for a garbled answer carries the request it failed
    on; neither the sender's answer nor the trail may repeat its Authorization."""
    with not_http() as url:
        live = start_live(upstream=url)
        client = twilio(live)
        with pytest.raises(TwilioRestException) as raised:
            send(client)
    assert (raised.value.status, raised.value.code) == (504, 20504)
    assert isinstance(client.http_client, HeaderClient)
    answer = client.http_client.answer
    record = live.decision(last_headers(client)["x-gateway-decision-id"])
    assert record["reasons"][-1]["code"] == "upstream_unknown"
    assert "no answer from the upstream" in record["reasons"][-1]["message"]
    for text in (answer.text, json.dumps(record)):
        assert TOKEN not in text and last_basic().split()[1] not in text


@contextlib.contextmanager
def not_http() -> Iterator[str]:
    """A server that reads a request and answers a line that is not HTTP."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_sender_is_known_by_credential_hash(start_live: StartLive) -> None:
    digest = hashlib.sha256(f"{ACCOUNT}:{TOKEN}".encode()).hexdigest()
    live = start_live(env={"GATEWAY_SENDERS": f"{{acme: {{credentials: [{digest}]}}}}"})
    live.opt_out(TO, "sender:acme")
    client = twilio(live)
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert raised.value.code == 21610
    assert live.decision(raised.value.details["decision_id"])["sender"] == "acme"


def test_sender_is_known_by_account_in_the_path(start_live: StartLive) -> None:
    live = start_live(env={"GATEWAY_SENDERS": f"{{acme: {{accounts: [{ACCOUNT}]}}}}"})
    client = twilio(live)
    send(client)
    assert live.decision(last_headers(client)["x-gateway-decision-id"])["sender"] == "acme"


def test_raw_request_goes_byte_for_byte_and_repeats_answer_once(live: Live) -> None:
    body = b"To=%2B12125550100&From=%2B12125550199&Body=caf%C3%A9+%F0%9F%98%80&StatusCallback="
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": "key-1",
        "X-Gateway-Trace": "not forwarded",
    }
    first = live.http.post(PATH, content=body, headers=headers)
    again = live.http.post(PATH, content=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again.headers["idempotent-replayed"] == "true"
    assert len(live.stub.received) == 1
    assert live.stub.received[0]["body"] == body
    assert header(live.stub.received[0], "I-Twilio-Idempotency-Token") == "key-1"
    assert "x-gateway-trace" not in {k.lower() for k in live.stub.received[0]["headers"]}
    other = live.http.post(PATH, content=body + b"x", headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == 20409
    assert other.headers["x-gateway-decision"] == "reject"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"From=%2B12125550199&Body=hi", 21604),
        (b"To=%2B12125550100&Body=hi", 21603),
        (b"To=%2B12125550100&From=%2B12125550199", 21602),
        (b"To=%2B12125550100&To=%2B12125550101&From=x&Body=hi", 20400),
        (b"\xff\xfe", 20400),
        (b"To=%2B12125550100&From=%2B12125550199&Body=fr%FFee", 20400),
        (b"To=%2B12125550100&From=%2B12125550199&Body=%ED%A0%80", 20400),
        # Twilio would send at SendAt, after the gateway judged the window now.
        (b"To=%2B12125550100&From=%2B12125550199&Body=hi&ScheduleType=fixed", 20400),
        (b"To=%2B12125550100&From=%2B12125550199&Body=hi&SendAt=2026-06-03T07%3A00%3A00Z", 20400),
        # Twilio might read a parameter in another case: it would go out unjudged.
        (b"To=%2B12125550100&From=x&Body=hi&body=guaranteed+returns", 20400),
        (b"To=%2B12125550100&From=x&Body=hi&sendat=2030-01-01T00%3A00%3A00Z", 20400),
        (b"To=%2B12125550100&From=x&Body=hi&to=%2B12125550101", 20400),
        # ContentVariables must be a JSON object of strings, as Twilio requires.
        (b"To=%2B12125550100&From=x&ContentSid=HX1&ContentVariables=%7B1", 21656),
        (b"To=%2B12125550100&From=x&ContentSid=HX1&ContentVariables=%7B%221%22%3A2%7D", 21656),
        (b"To=%2B12125550100&From=x&ContentSid=HX1&ContentVariables=%5B%5D", 21656),
        (
            b"To=%2B12125550100&From=x&ContentSid=HX1"
            b"&ContentVariables=%7B%221%22%3A%22%5Cud800%22%7D",
            21656,
        ),
    ],
)
def test_bad_input_is_a_twilio_400_and_records_nothing(live: Live, body: bytes, code: int) -> None:
    answer = live.http.post(PATH, content=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert answer.headers["x-gateway-decision"] == "reject"
    assert live.http.get("/v1/decisions").json()["decisions"] == []
    assert live.stub.received == []


@pytest.mark.parametrize(
    ("path", "headers", "what"),
    [
        # Read as a form by the gateway, as multipart by a provider that trusts the type.
        (PATH, {"Content-Type": "multipart/form-data; boundary=XX"}, "Content-Type must be"),
        (
            PATH,
            [("Content-Type", FORM), ("Content-Type", "multipart/form-data; boundary=X")],
            "Content-Type is given more than once",
        ),
        (PATH + "?Body=guaranteed+returns", {}, "query parameter 'Body' is not taken"),
        (PATH + "?To=%2B12125550101", {}, "query parameter 'To' is not taken"),
    ],
)
def test_what_twilio_might_read_otherwise_is_refused(
    live: Live, path: str, headers: Any, what: str
) -> None:
    body = b"To=%2B12125550100&From=%2B12125550199&Body=hi"
    answer = live.http.post(path, content=body, headers=headers)
    assert answer.status_code == 400
    assert what in answer.json()["message"]
    assert live.stub.received == []


def test_an_invalid_to_is_a_twilio_400_and_a_recorded_decision(live: Live) -> None:
    """As the native API does: the refusal of a number that is not one is a
    decision rejecting with invalid_recipient, and a repeat is replayed."""
    body = b"To=%2B1555&From=%2B12125550199&Body=hi"
    headers = {"I-Twilio-Idempotency-Token": "bad-1"}
    answer = live.http.post(PATH, content=body, headers=headers)
    again = live.http.post(PATH, content=body, headers=headers)
    assert answer.status_code == again.status_code == 400
    assert answer.json()["code"] == 21211
    assert answer.headers["x-gateway-decision"] == "reject"
    record = live.decision(answer.headers["x-gateway-decision-id"])
    # As every refusal's: the decision id in the message, and in details as data.
    assert record["decision_id"] in answer.json()["message"]
    assert answer.json()["details"] == {
        "decision_id": record["decision_id"],
        "reasons": record["reasons"],
    }
    assert [r["code"] for r in record["reasons"]] == ["invalid_recipient"]
    assert (record["route"], record["channel"], record["recipient_hint"]) == (
        "twilio",
        "sms",
        "+15…",
    )
    assert again.headers["x-gateway-decision-id"] == answer.headers["x-gateway-decision-id"]
    assert len(live.http.get("/v1/decisions").json()["decisions"]) == 1
    assert live.stub.received == []


def test_huge_body_is_413_in_twilio_shape(live: Live) -> None:
    answer = live.http.post(PATH, content=b"Body=" + b"a" * 300_000)
    assert answer.status_code == 413
    assert answer.json()["code"] == 20413


@pytest.mark.parametrize("account", ["..", "."])
def test_a_dot_segment_for_the_account_is_404(live: Live, account: str) -> None:
    # Sent as written (http.client leaves dot segments alone): the upstream's
    # client would have folded them into another path.
    url = urlsplit(live.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        connection.request(
            "POST",
            f"/2010-04-01/Accounts/{account}/Messages.json",
            body=b"To=%2B12125550100&From=%2B12125550199&Body=hi",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = connection.getresponse()
        status, body = answer.status, json.loads(answer.read())
    finally:
        connection.close()
    assert status == 404
    assert body["message"] == f"no such path: /2010-04-01/Accounts/{account}/Messages.json"
    assert live.stub.received == []


def test_a_forwarded_answer_has_one_date_and_one_server(start_live: StartLive) -> None:
    """The upstream's answer comes back with its own headers, but the server
    writes Date and Server itself: the upstream's copies would repeat them."""
    live = start_live()
    url = urlsplit(live.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        connection.request(
            "POST",
            PATH,
            body=b"To=%2B12125550100&From=%2B12125550199&Body=hi",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = connection.getresponse()
        answer.read()
        names = [name.lower() for name, _ in answer.getheaders()]
    finally:
        connection.close()
    assert answer.status == 201
    assert "x-upstream" in names  # the upstream's own headers come back
    assert (names.count("date"), names.count("server")) == (1, 1)
