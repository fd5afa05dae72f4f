"""The official SendGrid SDK, pointed at the gateway, against a real stub upstream:
one decision per recipient, one upstream request for the allowed ones."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    HTTPError,
    InternalServerError,
    TooManyRequestsError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

from gateway.adapters.mailtext import shown_html
from tests.adapters.conftest import RULES, Live, StartLive, header

KEY = "SG.test-key"


def client(live: Live) -> SendGridAPIClient:
    return SendGridAPIClient(api_key=KEY, host=live.url)  # the one line a sender changes


def mail(*blocks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "personalizations": list(blocks),
        "from": {"email": "news@shop.example"},
        "subject": "Weekly deals",
        "content": [{"type": "text/plain", "value": "Deals inside"}],
    } | extra


def to(*emails: str) -> list[dict[str, str]]:
    return [{"email": e} for e in emails]


def nested(depth: int) -> Any:
    """A list in a list ... `depth` levels deep."""
    return json.loads("[" * depth + "]" * depth)


def post(live: Live, data: dict[str, Any], **headers: str) -> Any:
    return client(live).client.mail.send.post(request_body=data, request_headers=headers)


def test_allowed_mail_goes_upstream_byte_for_byte(live: Live) -> None:
    message = Mail(
        from_email="news@shop.example",
        to_emails=["ann@example.com", "bob@example.com"],
        subject="Hello",
        plain_text_content="Hi there",
    )
    answer = client(live).send(message)
    assert answer.status_code == 201  # the stub's status, passed on unchanged
    assert answer.headers["X-Gateway-Decision"] == "allow"
    ids = answer.headers["X-Gateway-Decision-Id"].split(",")
    assert len(ids) == 2
    received = live.stub.received[0]
    assert received["path"] == "/v3/mail/send"
    assert received["body"] == json.dumps(message.get()).encode()
    assert header(received, "Authorization") == f"Bearer {KEY}"
    assert {live.decision(i)["recipient_hint"] for i in ids} == {"a…@example.com", "b…@example.com"}


def test_refused_recipients_are_removed_and_named(live: Live) -> None:
    live.opt_out("cat@example.com")
    live.opt_out("dan@example.com")
    data = mail(
        {"to": to("ann@example.com"), "cc": to("cat@example.com", "bob@example.com")},
        {"to": to("dan@example.com"), "bcc": to("eve@example.com")},
    )
    answer = post(live, data)
    assert answer.headers["X-Gateway-Decision"] == "partial"
    sent = json.loads(live.stub.received[0]["body"])
    assert sent["personalizations"] == [{"to": to("ann@example.com"), "cc": to("bob@example.com")}]
    assert sent["subject"] == data["subject"]
    dropped = answer.headers["X-Gateway-Dropped"]
    assert "field=personalizations.0.cc.0.email;code=opted_out;rule=global-opt-out" in dropped
    assert "field=personalizations.1.to.0.email;code=opted_out" in dropped
    ids = answer.headers["X-Gateway-Decision-Id"].split(",")
    eve = live.decision(ids[4])  # allowed, but cannot go without dan, its only `to`
    assert (eve["decision"], eve["reasons"][-1]["rule"]) == ("reject", "carried-with")
    assert live.decision(ids[0])["upstream"]["status"] == 201
    assert live.decision(ids[1])["reasons"][0]["code"] == "opted_out"  # cat


def test_only_recipients_sent_count(live: Live) -> None:
    live.opt_out("bob@example.com")
    post(live, mail({"to": to("ann@example.com", "bob@example.com")}))
    live.http.delete("/v1/opt-outs/global/bob@example.com")
    assert post(live, mail({"to": to("bob@example.com")})).headers["X-Gateway-Decision"] == "allow"
    with pytest.raises(TooManyRequestsError) as raised:
        post(live, mail({"to": to("ann@example.com")}))
    assert int(raised.value.headers["Retry-After"]) > 0
    errors = json.loads(raised.value.body)["errors"]
    assert errors[0]["field"] == "personalizations.0.to.0.email"
    assert "marketing-email-caps" in errors[0]["message"]


def test_refused_and_held_recipients_send_nothing_now(live: Live) -> None:
    live.opt_out("ann@example.com")
    data = mail({"to": to("ann@example.com", "bob@example.com")})
    answer = post(live, data, **{"X-Recipient-Timezone": "Asia/Tokyo"})
    assert answer.status_code == 202
    assert answer.headers["X-Gateway-Decision"] == "partial"
    dropped = answer.headers["X-Gateway-Dropped"]
    assert "decision=reject;field=personalizations.0.to.0.email;code=opted_out" in dropped
    assert "decision=defer;field=personalizations.0.to.1.email;code=outside_time_window" in dropped
    assert live.stub.received == []


def test_a_dropped_recipient_is_named_by_what_refused_it(start_live: StartLive) -> None:
    """Opted out and outside a deferring window that comes first: the header
    names the opt-out, which refused the recipient, not the window."""
    window_first = (
        "rules:\n"
        "  - id: email-quiet-first\n"
        "    type: time_window\n"
        "    match: {channel: email}\n"
        '    allow: {hours: "08:00-21:00"}\n'
        "    action: defer\n" + RULES.split("rules:\n", 1)[1]
    )
    live = start_live(rules=window_first)
    live.opt_out("ann@example.com")
    data = mail({"to": to("ann@example.com", "bob@example.com")})
    answer = post(live, data, **{"X-Recipient-Timezone": "Asia/Tokyo"})
    assert answer.headers["X-Gateway-Decision"] == "partial"
    ann, bob = answer.headers["X-Gateway-Dropped"].split(", ")
    assert "decision=reject;field=personalizations.0.to.0.email;code=opted_out" in ann
    assert "rule=global-opt-out" in ann
    assert "decision=defer;field=personalizations.0.to.1.email;code=outside_time_window" in bob
    record = live.decision(ann.split(";")[0])
    codes = [r["code"] for r in record["reasons"]]
    assert codes[0] == "outside_time_window" and "opted_out" in codes  # the window first


def test_what_fills_a_template_is_judged_for_its_personalization(live: Live) -> None:
    """A template's own text stays with SendGrid; its dynamic data and legacy
    substitutions are in the request, each judged with the recipient it fills."""
    data = mail(
        {"to": to("ann@example.com"), "dynamic_template_data": {"offer": {"lines": ["Hi Ann"]}}},
        {
            "to": to("bob@example.com"),
            "dynamic_template_data": {"offer": {"lines": ["Hi Bob", "guaranteed returns for you"]}},
        },
        {"to": to("cy@example.com"), "substitutions": {"-pitch-": "guaranteed returns"}},
        template_id="d-123",
    )
    del data["content"], data["subject"]
    answer = post(live, data)
    assert answer.headers["X-Gateway-Decision"] == "partial"
    sent = json.loads(live.stub.received[0]["body"])
    assert [p["to"] for p in sent["personalizations"]] == [to("ann@example.com")]
    refused = [live.decision(i) for i in answer.headers["X-Gateway-Decision-Id"].split(",")[1:]]
    assert [r["reasons"][0]["rule"] for r in refused] == ["finance-claims", "finance-claims"]


def html(value: str) -> list[dict[str, str]]:
    return [{"type": "text/html", "value": value}]


def attached(text: str, kind: str = "text/plain") -> list[dict[str, str]]:
    content = base64.b64encode(text.encode()).decode()
    return [{"content": content, "type": kind, "filename": "offer.txt"}]


TERM = "guaranteed returns"


@pytest.mark.parametrize(
    "extra",
    [
        # Substitutions are replaced into the content before it is judged.
        {
            "content": [{"type": "text/plain", "value": "-a- returns"}],
            "subs": {"-a-": "guaranteed"},
        },
        {"subject": "-a- returns", "subs": {"-a-": "guaranteed"}},
        {
            "content": [{"type": "text/plain", "value": "-a-"}],
            "subs": {"-a-": "%s%"},
            "sections": {"%s%": TERM},
        },
        # HTML is judged as a mail client shows it.
        {"content": html("<p>guaranteed&#32;returns</p>")},
        {"content": html("guar<b></b>anteed returns")},
        {"content": html("guar<!-- x -->anteed returns")},
        {"content": html('<img src="x.png" alt="guaranteed returns">')},
        # Where browsers and parsers differ on what is hidden, nothing is.
        {"content": html("<html><head><meta charset=utf-8><body><p>guaranteed returns</p>")},
        {"content": html('<p>guar<span title="x">anteed</span> returns</p>')},
        {"content": html("<!-->guaranteed returns<!-- -->")},
        {"content": html("<!-- x --!> guaranteed returns <!-- -->")},
        {"content": html("<p><![CDATA[ x > guaranteed returns ]]></p>")},
        {"content": html("<style>p{}</style\tx>guaranteed returns")},
        {"content": [{"type": "text/x-amp-html", "value": "<p>guar<b></b>anteed returns</p>"}]},
        {"content": html('guar<b title="a>b">anteed returns')},  # a quoted ">" ends no tag
        {"content": html("guar<!--<x>-->anteed returns")},
        {"content": html("<!-- guaranteed returns -->")},  # a comment's text is judged
        # What SendGrid adds, and what the reader sees beside the body.
        {"mail_settings": {"footer": {"enable": True, "text": TERM}}},
        {
            "tracking_settings": {
                "subscription_tracking": {"enable": True, "html": f"<i>{TERM}</i>"}
            }
        },
        {"from": {"email": "news@shop.example", "name": TERM}},
        {"to": [{"email": "ann@example.com", "name": TERM}]},
        {"attachments": attached(TERM)},
        {"template_id": "d-1", "dtd": {TERM: True}},
    ],
)
def test_whatever_the_reader_is_shown_is_judged(live: Live, extra: dict[str, Any]) -> None:
    block: dict[str, Any] = {"to": extra.pop("to", to("ann@example.com"))}
    if "subs" in extra:
        block["substitutions"] = extra.pop("subs")
    if "dtd" in extra:
        block["dynamic_template_data"] = extra.pop("dtd")
    answer = live.http.post("/v3/mail/send", json=mail(block, **extra))
    assert answer.status_code == 400, answer.text
    assert "finance-claims" in answer.json()["errors"][0]["message"]
    assert live.stub.received == []


def test_what_the_reader_is_not_shown_is_not_judged(live: Live) -> None:
    """A footer switched off, an unused substitution without a template, a bcc
    recipient's name: none reaches the reader."""
    data = mail(
        {
            "to": to("ann@example.com"),
            "bcc": [{"email": "bob@example.com", "name": TERM}],
            "substitutions": {"-unused-": TERM},
        },
        mail_settings={"footer": {"enable": False, "text": TERM}},
    )
    assert post(live, data).headers["X-Gateway-Decision"] == "allow"


def test_the_html_of_a_link_is_read_as_its_reader_reads_it() -> None:
    shown = shown_html('<p>To <a href="https://e.example/u">unsubscribe</a> click</p>')
    assert "To unsubscribe click" in shown and "https://e.example/u" in shown
    assert shown_html("a < b and c > d") == "a < b and c > d"
    big = "<a" * 124_800  # 250 KB that never closes a tag: read in one pass
    assert shown_html(big) == big
    # An address whose quoted value holds a ">" is found all the same.
    assert "https://bit.ly/abc?q=>" in shown_html('<a href="https://bit.ly/abc?q=>">Click</a>')


def test_sandbox_mode_is_judged_but_not_counted(live: Live) -> None:
    """SendGrid delivers nothing in sandbox mode: the cap of one marketing mail
    a day counts only the real one."""
    sandbox = {"sandbox_mode": {"enable": True}}
    headers = {"X-Message-Category": "marketing"}
    data = mail({"to": to("ann@example.com")})
    for _ in range(2):
        answer = post(live, data | {"mail_settings": sandbox}, **headers)
        assert answer.headers["X-Gateway-Dry-Run"] == "true"
    assert post(live, data, **headers).headers["X-Gateway-Decision"] == "allow"
    with pytest.raises(TooManyRequestsError):
        post(live, data | {"mail_settings": sandbox}, **headers)
    assert len(live.stub.received) == 3


def test_all_refused_is_a_400_errors_list(live: Live) -> None:
    live.opt_out("ann@example.com")
    live.opt_out("bob@example.com")
    with pytest.raises(BadRequestsError) as raised:
        post(live, mail({"to": to("ann@example.com"), "bcc": to("bob@example.com")}))
    errors = json.loads(raised.value.body)["errors"]
    assert [e["field"] for e in errors] == [
        "personalizations.0.to.0.email",
        "personalizations.0.bcc.0.email",
    ]
    assert all("opted_out" in e["message"] and "global-opt-out" in e["message"] for e in errors)
    assert raised.value.headers["X-Gateway-Decision"] == "reject"
    assert live.stub.received == []


def test_upstream_refusal_refunds_every_recipient(live: Live) -> None:
    live.stub.status, live.stub.answer = 500, {"errors": [{"message": "upstream broke"}]}
    data = mail({"to": to("ann@example.com", "bob@example.com")})
    with pytest.raises(InternalServerError) as raised:
        post(live, data)
    assert json.loads(raised.value.body) == {"errors": [{"message": "upstream broke"}]}
    live.stub.status, live.stub.answer = 202, {}
    assert post(live, data).headers["X-Gateway-Decision"] == "allow"


def test_deferred_recipients_are_held_one_by_one_and_sent_later(live: Live) -> None:
    data = mail({"to": to("ann@example.com"), "cc": to("bob@example.com")})
    answer = post(live, data, **{"X-Recipient-Timezone": "Asia/Tokyo"})  # 00:00 there
    assert (answer.status_code, answer.body) == (202, b"")
    assert answer.headers["X-Gateway-Decision"] == "defer"
    ids = answer.headers["X-Gateway-Decision-Id"].split(",")
    assert answer.headers["X-Message-Id"] == ids[0]
    assert live.stub.received == []
    live.clock.set(datetime(2026, 6, 2, 23, 0, 1, tzinfo=UTC))  # 08:00:01 in Tokyo
    assert [live.deferred_fate(i)["status"] for i in ids] == ["sent", "sent"]
    bodies = sorted(
        json.loads(r["body"])["personalizations"][0]["to"][0]["email"] for r in live.stub.received
    )
    assert bodies == ["ann@example.com", "bob@example.com"]
    assert all(header(r, "Authorization") == f"Bearer {KEY}" for r in live.stub.received)
    assert all(
        "x-recipient-timezone" not in {k.lower() for k in r["headers"]} for r in live.stub.received
    )


def test_unreachable_upstream_is_502_in_sendgrid_shape(start_live: StartLive) -> None:
    live = start_live(upstream="http://127.0.0.1:1")
    with pytest.raises(HTTPError) as raised:
        post(live, mail({"to": to("ann@example.com")}))
    assert raised.value.status_code == 502
    assert "no answer" in json.loads(raised.value.body)["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"[]", None),
        (json.dumps(mail()).encode(), "personalizations"),
        (
            json.dumps(mail({"to": to("a@example.com"), "dynamic_template_data": [1]})).encode(),
            "personalizations.0.dynamic_template_data",
        ),
        # SendGrid might read a name in another case as its own: an address
        # or a send time there would go out unchecked.
        (
            json.dumps(mail({"to": to("a@example.com"), "Bcc": to("b@example.com")})).encode(),
            "personalizations.0.Bcc",
        ),
        (json.dumps(mail({"to": to("a@example.com")}, Send_At=1780000000)).encode(), "Send_At"),
        (json.dumps(mail({"to": to("a@example.com")}, reply_to_list=5)).encode(), "reply_to_list"),
        (json.dumps(mail({"to": to("a@example.com")}, attachments=True)).encode(), "attachments"),
        # SendGrid's own limit: 10,000 bytes of substitutions in a personalization.
        (
            json.dumps(
                mail(
                    {
                        "to": to("a@example.com"),
                        "substitutions": {f"-k{i}-": "v" * 20 for i in range(400)},
                    }
                )
            ).encode(),
            "personalizations.0.substitutions",
        ),
        # At every level: a dry run SendGrid might not take for one, an address,
        # a text the gateway would not judge.
        (
            json.dumps(
                mail(
                    {"to": to("a@example.com")},
                    mail_settings={"sandbox_mode": {"enable": True, "Enable": False}},
                )
            ).encode(),
            "mail_settings.sandbox_mode.Enable",
        ),
        (
            json.dumps(
                mail({"to": [{"email": "a@example.com", "Email": "b@example.com"}]})
            ).encode(),
            "personalizations.0.to.0.Email",
        ),
        (
            json.dumps(
                mail(
                    {"to": to("a@example.com")},
                    content=[{"type": "text/plain", "value": "hi", "Value": "x"}],
                )
            ).encode(),
            "content.0.Value",
        ),
        (
            json.dumps(
                mail({"to": to("a@example.com")}, mail_settings={"BCC": {"enable": True}})
            ).encode(),
            "mail_settings.BCC",
        ),
        # An address SendGrid would copy every mail to, with no decision of its own.
        (
            json.dumps(
                mail(
                    {"to": to("a@example.com")},
                    mail_settings={"bcc": {"enable": True, "email": "b@example.com"}},
                )
            ).encode(),
            "mail_settings.bcc",
        ),
        (
            json.dumps(
                mail(
                    {"to": to("a@example.com")},
                    attachments=[{"type": "text/plain", "content": "%%"}],
                )
            ).encode(),
            "attachments.0.content",
        ),
        # SendGrid would send at send_at, after the gateway judged the window now.
        (
            json.dumps(mail({"to": to("a@example.com")}) | {"send_at": 1780000000}).encode(),
            "send_at",
        ),
        (
            json.dumps(mail({"to": to("a@example.com"), "send_at": 1780000000})).encode(),
            "personalizations.0.send_at",
        ),
        (json.dumps(mail({"to": to("not-an-address")})).encode(), "personalizations.0.to.0.email"),
        (
            json.dumps(mail({"to": to("a@example.com", "A@example.com")})).encode(),
            "personalizations.0.to.1.email",
        ),
        (
            json.dumps(mail({"to": [{"email": "a@example.com"}] * 1001})).encode(),
            "personalizations",
        ),
        (
            json.dumps(mail({"to": to("a@example.com")}, subject=None) | {"subject": 5}).encode(),
            "subject",
        ),
        (
            json.dumps(
                {k: v for k, v in mail({"to": to("a@example.com")}).items() if k != "from"}
            ).encode(),
            "from",
        ),
        # Each of the following was a 500. A lone surrogate cannot be hashed or
        # stored as UTF-8.
        (json.dumps(mail({"to": to("a@example.com")}, subject="s\ud800")).encode(), "subject"),
        (
            json.dumps(mail({"to": to("a\ud800@example.com")})).encode(),
            "personalizations.0.to.0.email",
        ),
        # The standard parser recursed past its limit, or would not read a
        # 5000-digit number; and a document it took near that limit could not be
        # written again to trim or hold it.
        (b"[" * 100_000, None),
        (json.dumps(mail({"to": to("a@example.com")}, custom_args=nested(200))).encode(), None),
        (b'{"personalizations": ' + b"1" * 5000 + b"}", None),
        (b'{"personalizations": NaN}', None),
        # A key twice: one address judged, both forwarded.
        (
            json.dumps(mail({"to": to("a@example.com")}))
            .replace('"to": [', '"to": [{"email": "b@example.com"}], "to": [', 1)
            .encode(),
            "to",
        ),
    ],
)
def test_bad_input_is_a_sendgrid_400(live: Live, body: bytes, field: str | None) -> None:
    answer = live.http.post("/v3/mail/send", content=body)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == field
    assert live.http.get("/v1/decisions").json()["decisions"] == []
