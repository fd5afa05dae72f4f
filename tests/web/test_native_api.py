"""POST /v1/messages and /v1/check as a sender sees them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.adapters.native import NativeMessage
from gateway.clock import FixedClock
from gateway.service import TEXTS
from gateway.store.sqlite import SqliteStore
from gateway.web.messages import _fingerprint as fingerprint
from gateway.web.once import scope_key
from tests.web.conftest import Make, sms


def test_allowed_message_goes_to_the_sandbox(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(body="Spring sale today"))
    assert answer.status_code == 201
    assert answer.headers["X-Gateway-Decision"] == "allow"
    body = answer.json()
    assert body["decision"] == "allow"
    assert answer.headers["X-Gateway-Decision-Id"] == body["decision_id"]
    assert body["upstream"]["status"] == 201
    assert body["upstream"]["body"]["status"] == "accepted"
    assert body["recipient"].startswith("hmac:") and body["recipient_hint"] == "+1212…0100"
    assert [t["rule"] for t in body["trace"]] == [
        "global-opt-out",
        "marketing-sms-caps",
        "sms-three-segments",
        "finance-claims",
        "tcpa-quiet-hours",
    ]
    assert {t["result"] for t in body["trace"]} == {"pass"}
    inbox = client.get("/v1/sandbox/messages").json()["messages"]
    assert inbox[0]["body"]["body"] == "Spring sale today"


def test_opted_out_recipient_is_refused_with_403(client: TestClient) -> None:
    put = client.put("/v1/opt-outs/global/+1 (212) 555-0100")
    assert put.status_code == 201
    answer = client.post("/v1/messages", json=sms())
    assert answer.status_code == 403
    assert answer.headers["X-Gateway-Decision"] == "reject"
    reasons = answer.json()["reasons"]
    assert reasons == [
        {"rule": "global-opt-out", "code": "opted_out", "message": "recipient opted out (global)"}
    ]
    trace = {t["rule"]: t for t in answer.json()["trace"]}
    assert trace["global-opt-out"]["detail"]["list"] == "global"
    assert client.get("/v1/sandbox/messages").json()["messages"] == []


def test_the_sender_list_is_separate(client: TestClient) -> None:
    client.put("/v1/opt-outs/sender:acme/+12125550100")
    assert client.post("/v1/messages", json=sms(sender="acme")).status_code == 403
    assert client.post("/v1/messages", json=sms(sender="other")).status_code == 201


def test_transactional_passes_opt_out(client: TestClient) -> None:
    client.put("/v1/opt-outs/global/+12125550100")
    answer = client.post("/v1/messages", json=sms(category="transactional"))
    assert answer.status_code == 201
    trace = {t["rule"]: t["result"] for t in answer.json()["trace"]}
    assert trace["global-opt-out"] == "skip"


def test_third_marketing_text_is_capped_with_retry_after(
    client: TestClient, clock: FixedClock
) -> None:
    assert client.post("/v1/messages", json=sms(body="a")).status_code == 201
    clock.advance(timedelta(hours=1))
    assert client.post("/v1/messages", json=sms(body="b")).status_code == 201
    clock.advance(timedelta(hours=1))
    answer = client.post("/v1/messages", json=sms(body="c"))
    assert answer.status_code == 429
    # The first send leaves the 24 h window one millisecond after 24 h: 22 h from now.
    assert answer.headers["Retry-After"] == str(22 * 3600 + 1)
    cap = {t["rule"]: t for t in answer.json()["trace"]}["marketing-sms-caps"]
    assert cap["result"] == "fail"
    assert cap["detail"]["count"] == 2 and cap["detail"]["limit"] == 2
    assert cap["detail"]["per"] == "24h"
    assert cap["detail"]["retry_at"] == "2026-06-03T15:00:00.001Z"


def test_refused_messages_do_not_count(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/v1/messages", json=sms(body="guaranteed returns!")).status_code == 403
    assert client.post("/v1/messages", json=sms(body="fine")).status_code == 201
    assert client.post("/v1/messages", json=sms(body="fine too")).status_code == 201


def test_marketing_at_night_is_deferred(client: TestClient, clock: FixedClock) -> None:
    clock.advance(timedelta(hours=11))  # 22:00 in New York
    answer = client.post("/v1/messages", json=sms())
    assert answer.status_code == 202
    body = answer.json()
    assert body["decision"] == "defer"
    assert body["deliver_at"] == "2026-06-03T12:00:00Z"  # 08:00 EDT
    assert body["reasons"][0]["code"] == "outside_time_window"
    assert body["reasons"][0]["message"] == "22:00 America/New_York is outside 08:00-21:00"
    held = client.get(f"/v1/deferred/{body['decision_id']}").json()
    assert held["status"] == "pending" and held["deliver_at"] == "2026-06-03T12:00:00Z"
    cancelled = client.delete(f"/v1/deferred/{body['decision_id']}")
    assert cancelled.json()["status"] == "cancelled"
    assert client.delete(f"/v1/deferred/{body['decision_id']}").status_code == 409


def test_reject_wins_over_defer(client: TestClient, clock: FixedClock) -> None:
    clock.advance(timedelta(hours=11))
    answer = client.post("/v1/messages", json=sms(body="guaranteed returns"))
    assert answer.status_code == 403
    codes = [r["code"] for r in answer.json()["reasons"]]
    assert codes == ["banned_term", "outside_time_window"]


def test_check_has_no_side_effects_and_takes_at(client: TestClient) -> None:
    for _ in range(3):
        answer = client.post("/v1/check", json=sms())
        assert answer.status_code == 200 and answer.json()["decision"] == "allow"
    assert client.get("/v1/sandbox/messages").json()["messages"] == []
    night = client.post("/v1/check", json=sms(at="2026-06-02T23:30:00-04:00")).json()
    assert night["decision"] == "defer" and night["deliver_at"] == "2026-06-03T12:00:00Z"
    assert client.get("/v1/deferred").json()["deferred"] == []


def test_idempotency_key_returns_the_first_answer(client: TestClient) -> None:
    first = client.post("/v1/messages", json=sms(idempotency_key="k1"))
    again = client.post("/v1/messages", json=sms(idempotency_key="k1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/sandbox/messages").json()["messages"]) == 1
    other = client.post("/v1/messages", json=sms(idempotency_key="k1", body="different"))
    assert other.status_code == 409
    assert other.headers["X-Gateway-Decision"] == "reject"
    # One counted send: a second distinct message still fits under the cap of 2.
    assert client.post("/v1/messages", json=sms(body="x")).status_code == 201


def test_idempotency_keys_of_two_senders_never_meet(client: TestClient) -> None:
    """Sender names may hold ':', as keys may: "a:b" with key "k" and "a" with
    key "b:k" are two senders' keys, not one."""
    first = client.post("/v1/messages", json=sms(sender="a:b", idempotency_key="k"))
    second = client.post("/v1/messages", json=sms(sender="a", idempotency_key="b:k"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert "idempotent-replayed" not in second.headers
    assert second.json()["decision_id"] != first.json()["decision_id"]


def test_a_refused_recipient_is_replayed_under_its_idempotency_key(client: TestClient) -> None:
    first = client.post("/v1/messages", json=sms(to="+1415", idempotency_key="k3"))
    again = client.post("/v1/messages", json=sms(to="+1415", idempotency_key="k3"))
    assert first.status_code == again.status_code == 400
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["decision_id"] == first.json()["decision_id"]
    refused = client.get("/v1/decisions", params={"code": "invalid_recipient"}).json()
    assert len(refused["decisions"]) == 1  # one answer, one record


def test_invalid_recipient_is_a_400_decision(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(to="+1 555"))
    assert answer.status_code == 400
    body = answer.json()
    assert body["decision"] == "reject"
    assert body["reasons"][0]["code"] == "invalid_recipient"
    bad_mail = client.post(
        "/v1/messages",
        json={"channel": "email", "to": "john.smith.secret@gmail", "subject": "s", "body": "b"},
    )
    assert bad_mail.status_code == 400
    assert bad_mail.json()["reasons"][0]["code"] == "invalid_recipient"
    # The answer quotes the address as given; the decision, kept in the trail,
    # names it only by its hint, as it does every recipient.
    assert bad_mail.json()["error"] == "'john.smith.secret@gmail' is not an email address"
    kept = bad_mail.json()["reasons"][0]["message"]
    assert kept == f"'{bad_mail.json()['recipient_hint']}' is not an email address"
    assert "secret" not in kept
    # Both are decisions with an id, in the trail like any other refusal.
    ids = [answer.headers["X-Gateway-Decision-Id"], bad_mail.headers["X-Gateway-Decision-Id"]]
    assert ids == [body["decision_id"], bad_mail.json()["decision_id"]]
    listed = client.get("/v1/decisions").json()["decisions"]
    assert [d["decision_id"] for d in listed] == ids[::-1]
    assert listed[0]["reasons"][0]["code"] == "invalid_recipient"
    # The category and sender take their defaults, as for a valid message.
    assert body["category"] == "marketing" and body["sender"] == "default"


def test_an_invalid_recipient_checked_is_not_recorded(client: TestClient) -> None:
    answer = client.post("/v1/check", json=sms(to="+1 555"))
    assert answer.status_code == 400
    assert answer.headers["X-Gateway-Decision-Id"] == answer.json()["decision_id"]
    assert client.get("/v1/decisions").json()["decisions"] == []
    asked = client.post("/v1/check", json=sms(to="+1 555", at="2026-06-02T22:00:00-04:00"))
    assert asked.json()["at"] == "2026-06-03T02:00:00Z"  # the moment asked about


def test_decisions_are_recorded_and_filtered(client: TestClient) -> None:
    allowed = client.post("/v1/messages", json=sms()).json()
    client.put("/v1/opt-outs/global/+12125550111")
    refused = client.post("/v1/messages", json=sms(to="+12125550111")).json()
    record = client.get(f"/v1/decisions/{allowed['decision_id']}").json()
    assert record["decision"] == "allow" and record["upstream"]["status"] == 201
    assert "body" not in record["upstream"]
    assert record["content"]["body"]["length"] == 5 and "text" not in record["content"]["body"]
    # The text's digest is keyed: a short text (a one-time code) cannot be
    # found again by hashing every candidate.
    pseudonyms = client.app.state.runtime.gateway.pseudonyms  # type: ignore[attr-defined]
    keyed = hmac.new(pseudonyms.derived(TEXTS), b"Hello", hashlib.sha256).hexdigest()
    assert record["content"]["body"] == {"hmac_sha256": keyed, "length": 5}
    assert hashlib.sha256(b"Hello").hexdigest() not in json.dumps(record)
    by_recipient = client.get("/v1/decisions", params={"recipient": "+1 212 555 0111"}).json()
    assert [d["decision_id"] for d in by_recipient["decisions"]] == [refused["decision_id"]]
    by_code = client.get("/v1/decisions", params={"code": "opted_out"}).json()
    assert [d["decision_id"] for d in by_code["decisions"]] == [refused["decision_id"]]
    newest_first = client.get("/v1/decisions").json()["decisions"]
    assert [d["decision_id"] for d in newest_first] == [
        refused["decision_id"],
        allowed["decision_id"],
    ]
    page = client.get("/v1/decisions", params={"limit": 1}).json()
    rest = client.get("/v1/decisions", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert rest["decisions"][0]["decision_id"] == allowed["decision_id"]
    assert client.get("/v1/decisions/nope").status_code == 404
    lower = client.get(f"/v1/decisions/{allowed['decision_id'].lower()}")
    assert lower.json()["decision_id"] == allowed["decision_id"]  # ids are case-insensitive


def test_empty_or_repeated_filters_are_refused(client: TestClient) -> None:
    """An empty filter (a script's unset variable) would match every decision:
    it is an error, as is a filter given twice, rather than a guess."""
    client.post("/v1/messages", json=sms())
    for path in ("/v1/decisions", "/v1/decisions/export"):
        empty = client.get(path, params={"recipient": ""})
        assert (empty.status_code, empty.json()["error"]) == (
            400,
            "recipient: empty; leave a filter out to match every decision",
        )
        twice = client.get(path + "?sender=acme&sender=other")
        assert (twice.status_code, twice.json()["error"]) == (400, "sender: given more than once")


def test_categories_and_tags_are_read_in_any_case(make_client: Make) -> None:
    """A category or tag in capitals is held to the rules written for it in
    lower case: "Marketing" must not slip past marketing's rules."""
    client = make_client(
        "rules:\n  - id: no-promo\n    type: banned_terms\n    terms: [free]\n"
        "    match: {category: marketing, tags: promo}\n"
    )
    answer = client.post(
        "/v1/messages", json=sms(body="free", category="Marketing", tags=["PROMO"])
    )
    assert answer.status_code == 403
    assert answer.json()["category"] == "marketing"
    assert answer.json()["reasons"][0]["rule"] == "no-promo"


def test_monitor_mode_records_without_enforcing(make_client: Make) -> None:
    client = make_client(
        "rules:\n  - id: watch\n    type: banned_terms\n    terms: [free]\n    action: monitor\n"
    )
    answer = client.post("/v1/messages", json=sms(body="free pizza"))
    assert answer.status_code == 201
    trace = answer.json()["trace"][0]
    assert trace["result"] == "monitor" and trace["code"] == "banned_term"
    assert answer.json()["reasons"] == []
    found = client.get("/v1/decisions", params={"rule": "watch"}).json()["decisions"]
    assert len(found) == 1


def test_opt_out_endpoints(client: TestClient) -> None:
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 404
    assert (
        client.put("/v1/opt-outs/global/+12125550100", json={"note": "asked by phone"}).status_code
        == 201
    )
    assert client.put("/v1/opt-outs/global/+1-212-555-0100").status_code == 200
    entry = client.get("/v1/opt-outs/global/+12125550100").json()
    assert entry["note"] == "asked by phone" and entry["added_at"] == "2026-06-02T15:00:00Z"
    assert client.delete("/v1/opt-outs/global/(+1) 212 555 0100").status_code == 204
    assert client.delete("/v1/opt-outs/global/+12125550100").status_code == 404
    assert client.put("/v1/opt-outs/global/not a number").status_code == 400


def test_messages_are_decided_while_a_bundle_is_reloaded(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a large bundle takes seconds: meanwhile the current one keeps
    deciding, instead of every request waiting for the reload."""
    policies = client.app.state.runtime.policies  # type: ignore[attr-defined]
    reading, go_on = threading.Event(), threading.Event()
    reload = policies.reload

    def slow_reload() -> Any:
        reading.set()
        assert go_on.wait(10)
        return reload()

    monkeypatch.setattr(policies, "reload", slow_reload)
    answers: list[int] = []
    asked = threading.Thread(
        target=lambda: answers.append(client.post("/v1/policies/reload").status_code)
    )
    asked.start()
    try:
        assert reading.wait(10)
        assert client.post("/v1/messages", json=sms()).status_code == 201
    finally:
        go_on.set()
        asked.join(10)
    assert answers == [200]


def test_a_reload_warns_of_a_route_the_config_does_not_have(make_client: Make) -> None:
    rule = "rules:\n  - {id: r, type: content_length, max_chars: 5, unless: {route: [twillio]}}\n"
    client = make_client(rules=rule)
    answer = client.post("/v1/policies/reload")
    assert answer.status_code == 200
    assert answer.json()["warnings"] == [
        "rule r: unless.route names twillio, not a route of the configuration (native, twilio,"
        " sendgrid, fcm): no message comes by it"
    ]


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["policy_version"].startswith("sha256:")


def test_without_a_native_route_the_native_paths_are_404(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_ROUTES": "[{name: tw, adapter: twilio, upstream: sandbox}]"})
    for path in ("/v1/messages", "/v1/check"):
        answer = client.post(path, json=sms())
        assert answer.status_code == 404
        assert answer.json()["error"] == "no route with adapter: native is configured"


def test_a_repeat_of_a_request_cut_short_by_a_stop_is_told_at_once(
    make_client: Make, tmp_path: Path
) -> None:
    """The process that owns the data folder starts: a claim left in flight is
    its predecessor's, cut short. A repeat is told so at once, instead of
    waiting 30 s to hear that the key is still in flight."""
    data = tmp_path / "data-0"  # the first client's data folder
    data.mkdir()
    store = SqliteStore(data / "state.db")
    cut = NativeMessage.model_validate(sms(idempotency_key="k9"))  # what was being sent
    asyncio.run(store.idempotency_begin(scope_key("default", "k9"), fingerprint(cut), 0, 10**13))
    asyncio.run(store.close())
    client = make_client()
    started = time.monotonic()
    answer = client.post("/v1/messages", json=sms(idempotency_key="k9"))
    assert time.monotonic() - started < 5
    assert answer.status_code == 409
    assert "cut short when the gateway stopped; it may have been sent" in answer.json()["error"]
    assert answer.headers["X-Gateway-Decision"] == "reject"
    assert client.get("/v1/sandbox/messages").json()["messages"] == []
