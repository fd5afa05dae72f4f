"""FCM HTTP v1 through the gateway, as raw HTTP, against a real stub upstream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.adapters.conftest import Live, StartLive, header

PATH = "/v1/projects/my-app/messages:send"
TOKEN = "dev-token-1"
AUTH = {"Authorization": "Bearer ya29.access-token"}


def push(**message: Any) -> dict[str, Any]:
    return {"message": {"token": TOKEN, "notification": {"title": "Hi", "body": "Sale"}} | message}


def rpc(answer: Any) -> dict[str, Any]:
    error: dict[str, Any] = answer.json()["error"]
    return error


def test_allowed_push_goes_upstream_byte_for_byte(live: Live) -> None:
    live.stub.status, live.stub.answer = 200, {"name": "projects/my-app/messages/42"}
    # Platform blocks may repeat the notification's texts and add their own settings.
    android = {"notification": {"title": "Hi", "body": "Sale", "channel_id": "deals"}}
    apns = {"payload": {"aps": {"alert": {"title": "Hi", "body": "Sale"}, "badge": 1}}}
    message = push(data={"k": "v"}, android=android, apns=apns)
    body = json.dumps(message, separators=(",", ":")).encode() + b"  \n"
    answer = live.http.post(PATH, content=body, headers=AUTH | {"X-Message-Tags": "promo"})
    assert answer.status_code == 200
    assert answer.json() == {"name": "projects/my-app/messages/42"}
    assert answer.headers["x-gateway-decision"] == "allow"
    received = live.stub.received[0]
    assert (received["path"], received["body"]) == (PATH, body)
    assert header(received, "Authorization") == AUTH["Authorization"]
    assert header(received, "X-Message-Tags") is None
    record = live.decision(answer.headers["x-gateway-decision-id"])
    assert record["upstream"]["message_id"] == "projects/my-app/messages/42"


def test_opted_out_token_is_failed_precondition(live: Live) -> None:
    live.opt_out(TOKEN)
    answer = live.http.post(PATH, json=push(), headers=AUTH)
    assert answer.status_code == 400
    error = rpc(answer)
    assert error["status"] == "FAILED_PRECONDITION"
    assert "opted_out" in error["message"] and "global-opt-out" in error["message"]
    info = error["details"][1]
    assert info["metadata"]["decision_id"] == answer.headers["x-gateway-decision-id"]
    assert live.stub.received == []


def test_capped_push_is_resource_exhausted_with_retry_after(live: Live) -> None:
    assert live.http.post(PATH, json=push(), headers=AUTH).status_code == 201
    answer = live.http.post(PATH, json=push(), headers=AUTH)
    assert answer.status_code == 429
    assert rpc(answer)["status"] == "RESOURCE_EXHAUSTED"
    assert rpc(answer)["details"][0]["errorCode"] == "QUOTA_EXCEEDED"
    assert 3600 <= int(answer.headers["retry-after"]) <= 3601  # one hour, rounded up


def test_banned_term_is_invalid_argument(live: Live) -> None:
    body = push(notification={"title": "Hi", "body": "guaranteed returns"})
    answer = live.http.post(PATH, json=body, headers=AUTH)
    assert (answer.status_code, rpc(answer)["status"]) == (400, "INVALID_ARGUMENT")
    assert "finance-claims" in rpc(answer)["message"]


@pytest.mark.parametrize(
    "platform",
    [
        {
            "android": {
                "notification": {"body_loc_key": "offer", "body_loc_args": ["guaranteed returns"]}
            }
        },
        {"apns": {"payload": {"aps": {"alert": {"title-loc-args": ["guaranteed returns"]}}}}},
        {"android": {"notification": {"titleLocArgs": ["guaranteed returns"]}}},
        {"android": {"notification": {"ticker": "guaranteed returns"}}},
        {"apns": {"payload": {"aps": {"alert": {"subtitle": "guaranteed returns"}}}}},
        {
            "webpush": {
                "notification": {"actions": [{"action": "a", "title": "guaranteed returns"}]}
            }
        },
    ],
)
def test_what_a_platform_shows_beside_the_body_is_judged(
    live: Live, platform: dict[str, Any]
) -> None:
    """A subtitle, a ticker, a button's label, and the arguments that fill a
    localized string (the string is in the app): a banned term there refuses the push."""
    answer = live.http.post(PATH, json=push(**platform), headers=AUTH)
    assert (answer.status_code, rpc(answer)["status"]) == (400, "INVALID_ARGUMENT")
    assert "finance-claims" in rpc(answer)["message"]
    assert live.stub.received == []


def test_googles_own_query_parameters_are_taken_and_no_other(live: Live) -> None:
    taken = live.http.post(PATH + "?alt=json&prettyPrint=false", json=push(), headers=AUTH)
    assert taken.status_code == 201
    # Credentials in the query would send as a sender the gateway never knew.
    token = live.http.post(PATH + "?access_token=ya29.other", json=push(), headers=AUTH)
    assert (token.status_code, rpc(token)["status"]) == (400, "INVALID_ARGUMENT")
    refused = live.http.post(PATH + "?message.notification.body=x", json=push(), headers=AUTH)
    assert (refused.status_code, rpc(refused)["status"]) == (400, "INVALID_ARGUMENT")
    assert "is not taken" in rpc(refused)["message"]
    assert len(live.stub.received) == 1


def test_a_dry_run_is_judged_and_validated_but_not_counted(live: Live) -> None:
    """validate_only: FCM delivers nothing, so the cap of one push an hour
    counts only the real one, and no decision is recorded for a dry run."""
    dry = {"message": push()["message"], "validate_only": True}
    for _ in range(2):
        answer = live.http.post(PATH, json=dry, headers=AUTH)
        assert answer.status_code == 201  # the upstream validated it
        assert (answer.headers["x-gateway-decision"], answer.headers["x-gateway-dry-run"]) == (
            "allow",
            "true",
        )
    assert live.http.post(PATH, json=push(), headers=AUTH).status_code == 201
    capped = live.http.post(PATH, json=dry, headers=AUTH)
    assert (capped.status_code, rpc(capped)["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert len(live.stub.received) == 3  # the capped dry run never went out
    assert len(live.http.get("/v1/decisions").json()["decisions"]) == 1
    # However the key is written, and even for a token that is none.
    escaped = json.dumps(dry).replace("validate_only", "validate\\u005fonly").encode()
    again = live.http.post(PATH, content=escaped, headers=AUTH)
    assert again.headers["x-gateway-dry-run"] == "true"
    bad = {"message": {"token": "bad token!"}, "validate_only": True}
    assert live.http.post(PATH, json=bad, headers=AUTH).status_code == 400
    assert len(live.http.get("/v1/decisions").json()["decisions"]) == 1


def test_topic_is_a_recipient_of_its_own(live: Live) -> None:
    live.opt_out("topic:news")
    answer = live.http.post(PATH, json={"message": {"topic": "news"}}, headers=AUTH)
    assert rpc(answer)["status"] == "FAILED_PRECONDITION"


def test_timeout_is_504_deadline_exceeded(start_live: StartLive) -> None:
    live = start_live(env={"GATEWAY_UPSTREAM_READ_TIMEOUT": "0.3"})
    live.stub.delay = 1.0
    answer = live.http.post(PATH, json=push(), headers=AUTH)
    assert (answer.status_code, rpc(answer)["status"]) == (504, "DEADLINE_EXCEEDED")
    record = live.decision(answer.headers["x-gateway-decision-id"])
    assert record["reasons"][-1]["code"] == "upstream_unknown"


def test_idempotency_key_returns_the_first_answer(live: Live) -> None:
    headers = AUTH | {"Idempotency-Key": "push-1"}
    first = live.http.post(PATH, json=push(), headers=headers)
    again = live.http.post(PATH, json=push(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["x-gateway-decision-id"] == first.headers["x-gateway-decision-id"]
    assert len(live.stub.received) == 1


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"{nope", "not valid JSON"),
        (json.dumps({"message": {"token": TOKEN}, "extra": 1}).encode(), 'Unknown name "extra"'),
        (json.dumps({"message": {"token": TOKEN, "tokens": []}}).encode(), 'Unknown name "tokens"'),
        (json.dumps(push(notification={"foo": "x"})).encode(), 'Unknown name "foo"'),
        (json.dumps({"message": {"condition": "'a' in topics"}}).encode(), "token or topic only"),
        (json.dumps({"message": {"token": TOKEN, "topic": "a"}}).encode(), "exactly one"),
        (json.dumps({"message": {"token": TOKEN, "data": {"n": 1}}}).encode(), "string values"),
        (json.dumps({"message": {"token": "bad token!"}}).encode(), "registration token"),
        (json.dumps({"message": "x"}).encode(), "an object"),
        (
            json.dumps(push(android={"notification": {"body_loc_args": "x"}})).encode(),
            '"message.android.notification.body_loc_args": must be a list of strings',
        ),
        # A platform would show a text the policies never saw.
        (
            json.dumps(push(android={"notification": {"body": "guaranteed returns"}})).encode(),
            '"message.android.notification.body": differs from message.notification.body',
        ),
        (
            json.dumps(push(apns={"payload": {"aps": {"alert": {"title": "Win"}}}})).encode(),
            '"message.apns.payload.aps.alert.title": differs from message.notification.title',
        ),
        (
            json.dumps(push(apns={"payload": {"aps": {"alert": "guaranteed returns"}}})).encode(),
            '"message.apns.payload.aps.alert": differs from message.notification.body',
        ),
        (
            json.dumps(push(webpush={"notification": {"title": "Win"}})).encode(),
            '"message.webpush.notification.title": differs',
        ),
        # Each of the following was a 500 (see the same cases for SendGrid).
        (
            json.dumps(push(notification={"title": "Hi", "body": "x\ud800"})).encode(),
            "message.notification.body: lone surrogate U+D800 at offset 1",
        ),
        (b"[" * 100_000, "nested too deeply"),
        (
            json.dumps(push(android={"data": json.loads("[" * 200 + "]" * 200)})).encode(),
            "nested more than 128 levels deep",
        ),
        (b'{"message": {"token": "t", "android": ' + b"1" * 5000 + b"}}", "too many digits"),
        (b'{"message": {"token": "t"}, "validate_only": NaN}', "NaN is not a JSON number"),
        (b'{"message": {"token": "t-1", "token": "t-2"}}', "token: given more than once"),
    ],
)
def test_bad_input_is_invalid_argument(live: Live, body: bytes, what: str) -> None:
    answer = live.http.post(PATH, content=body, headers=AUTH)
    assert (answer.status_code, rpc(answer)["status"]) == (400, "INVALID_ARGUMENT")
    assert what in rpc(answer)["message"]
    assert live.stub.received == []
    assert answer.headers["x-gateway-decision"] == "reject"
    # Only a recipient that is not one is a decision (invalid_recipient), recorded.
    recorded = live.http.get("/v1/decisions").json()["decisions"]
    if what == "registration token":
        assert [d["decision_id"] for d in recorded] == [answer.headers["x-gateway-decision-id"]]
        assert recorded[0]["reasons"][0]["code"] == "invalid_recipient"
        info = rpc(answer)["details"][1]  # as every refusal's: the decision and its rule
        assert info["reason"] == "INVALID_RECIPIENT"
        assert info["metadata"] == {"decision_id": recorded[0]["decision_id"], "rules": "recipient"}
    else:
        assert recorded == [] and "x-gateway-decision-id" not in answer.headers


def test_huge_body_is_413(live: Live) -> None:
    answer = live.http.post(PATH, content=b"{" + b" " * 300_000 + b"}", headers=AUTH)
    assert answer.status_code == 413
    assert rpc(answer)["code"] == 413
