"""Bad input of every kind gets a 4xx with the field and the reason; nothing is
stored and nothing is sent."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import sms


def assert_nothing_happened(client: TestClient) -> None:
    assert client.get("/v1/sandbox/messages").json()["messages"] == []
    assert client.get("/v1/decisions").json()["decisions"] == []


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (sms(channel="fax"), "channel", "Input should be 'sms', 'email' or 'push'"),
        (sms(body=5), "body", "Input should be a valid string"),
        (sms(colour="red"), "colour", "unknown field"),
        (
            sms(recipient_timezone="Mars/Base"),
            "recipient_timezone",
            "'Mars/Base' is not an IANA time zone like America/New_York",
        ),
        (sms(body="a\x07b"), "body", "control character U+0007 at offset 1"),
        (sms(body="a\tb"), "body", "control character U+0009 at offset 1"),
        (sms(body="a\ud800b"), "body", "lone surrogate U+D800 at offset 1"),
        (sms(tags="otp"), "tags", "Input should be a valid list"),
        ({"channel": "sms", "body": "x"}, "to", "Field required"),
        ({"channel": "email", "to": "a@example.com", "body": "x"}, "subject", "required for email"),
    ],
)
def test_field_errors(
    client: TestClient, payload: dict[str, object], field: str, reason: str
) -> None:
    raw = json.dumps(payload)  # ASCII escapes, so a lone surrogate travels as \ud800
    answer = client.post("/v1/messages", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["fields"][field] == reason
    assert_nothing_happened(client)


def test_form_feed_and_newlines_are_ordinary_characters(client: TestClient) -> None:
    assert client.post("/v1/messages", json=sms(body="a\nb\rc\fd")).status_code == 201


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            b"{not json",
            "the body is not valid JSON: Expecting property name enclosed in double "
            "quotes at line 1 column 2",
        ),
        (b"[1, 2]", "the body must be a JSON object (one message)"),
        (b"\xff\xfe", "the body is not UTF-8 text"),
        (b"", "the body is not valid JSON: Expecting value at line 1 column 1"),
    ],
)
def test_malformed_bodies(client: TestClient, raw: bytes, error: str) -> None:
    answer = client.post("/v1/messages", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert_nothing_happened(client)


def test_huge_body_is_413(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(body="x" * 300_000))
    assert answer.status_code == 413
    assert answer.json()["error"] == "the body is over the 262144 byte limit"
    assert_nothing_happened(client)


def test_100_kb_of_text_gets_a_decision(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(body="x" * 100_000))
    assert answer.status_code == 403
    assert answer.json()["reasons"][0]["code"] == "content_too_long"


def test_bad_query_parameters(client: TestClient) -> None:
    assert client.get("/v1/decisions", params={"limit": "lots"}).status_code == 400
    assert client.get("/v1/decisions", params={"since": "yesterday"}).status_code == 400
    assert client.get("/v1/decisions", params={"colour": "red"}).status_code == 400
    assert client.get("/v1/deferred", params={"status": "lost"}).status_code == 400


def test_unknown_path_and_method(client: TestClient) -> None:
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/messages").status_code == 405


def test_a_lone_surrogate_in_the_recipient_is_a_400(client: TestClient) -> None:
    raw = json.dumps(sms(to="+1212555\ud8000"))
    answer = client.post("/v1/messages", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert "to" in answer.json()["fields"]
    assert_nothing_happened(client)
