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
        # Echoed raw, the surrogate made pydantic raise UnicodeEncodeError: a 500.
        (
            sms(recipient_timezone="a\ud800"),
            "recipient_timezone",
            "'a\\ud800' is not an IANA time zone like America/New_York",
        ),
        # pydantic named "body" for this key; it is the key that is wrong.
        (sms(**{"\ud800": 1}), "\\ud800", "unknown field"),
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
        # A key twice: the decision would read one value, the bytes forwarded
        # would carry both (an opted-out number beside an allowed one).
        (
            b'{"channel":"sms","to":"+12125550111","body":"a","to":"+12125550100"}',
            "to: given more than once",
        ),
        (
            b'{"channel": "sms", "to": "+12125550100", "body": "a",\n "category" : "marketing",'
            b' "category": "transactional"}',
            "category: given more than once",
        ),
    ],
)
def test_malformed_bodies(client: TestClient, raw: bytes, error: str) -> None:
    answer = client.post("/v1/messages", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert answer.headers["X-Gateway-Decision"] == "reject"
    assert_nothing_happened(client)


def test_huge_body_is_413(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(body="x" * 300_000))
    assert answer.status_code == 413
    assert answer.headers["X-Gateway-Decision"] == "reject"
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
    for path in ("/v1/decisions", "/v1/decisions/export"):
        answer = client.get(path, params={"decision": "bogus"})
        assert answer.status_code == 400
        assert answer.json()["fields"] == {"decision": "allow, reject or defer"}
        # A misspelt code would find nothing, which reads as "never happened".
        answer = client.get(path, params={"code": "opted-out"})
        assert answer.status_code == 400
        assert answer.json()["fields"] == {"code": "unknown"}
        assert answer.json()["error"].startswith("code: 'opted-out' is not a reason code (")
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


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        # The standard parser (taken when orjson refuses a body) recursed past
        # its limit, or would not read a 5000-digit number: both were a 500.
        (b"[" * 100_000, "the body is not valid JSON: it is nested too deeply"),
        (b'{"a":' * 50_000, "the body is not valid JSON: it is nested too deeply"),
        (
            b'{"channel": "sms", "tags": [' + b"1" * 5000 + b"]}",
            "the body is not valid JSON: a number has too many digits",
        ),
        (b'{"channel": NaN}', "the body is not valid JSON: NaN is not a JSON number"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/check"])
def test_bodies_the_standard_parser_cannot_take(
    client: TestClient, path: str, raw: bytes, error: str
) -> None:
    answer = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert_nothing_happened(client)


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1969-12-31T23:59:59Z"]
)
def test_check_at_far_from_now_is_a_400(client: TestClient, at: str) -> None:
    # Near datetime's limits (the first two) the rules' local times overflowed:
    # a 500. The range allowed now starts at the Unix epoch.
    answer = client.post("/v1/check", json=sms(at=at))
    assert answer.status_code == 400
    assert answer.json()["fields"]["at"] == (
        "must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        # str.isdigit takes "²", which int() refuses; int() refuses 5000 digits;
        # SQLite refuses a number past 64 bits. Each was a 500.
        ("/v1/decisions", {"limit": "²"}, "limit"),
        ("/v1/decisions", {"limit": "9" * 5000}, "limit"),
        ("/v1/deferred", {"limit": "²"}, "limit"),
        ("/v1/decisions", {"cursor": "²"}, "cursor"),
        ("/v1/decisions", {"cursor": "9" * 30}, "cursor"),
        ("/v1/decisions", {"cursor": "9" * 5000}, "cursor"),
    ],
)
def test_numbers_in_the_query_that_int_cannot_take(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code == 400
    assert answer.json()["fields"] == {field: "invalid"}


def test_a_recipient_filter_that_is_no_address_names_the_filter(client: TestClient) -> None:
    answer = client.get("/v1/decisions?recipient=+12125550100")  # "+" read as a space
    assert answer.status_code == 400
    assert list(answer.json()["fields"]) == ["recipient"]
    assert answer.json()["error"].endswith("(a + in a query string is written %2B)")
    assert client.get("/v1/decisions?recipient=%2B12125550100").status_code == 200


def test_a_content_length_of_5000_digits_is_a_413(client: TestClient) -> None:
    # int() refuses that many digits: this was a 500.
    headers = {"content-length": "9" * 5000, "content-type": "application/json"}
    answer = client.post("/v1/messages", content=b"{}", headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"] == "the body is over the 262144 byte limit"
    assert_nothing_happened(client)


def test_an_opt_out_note_with_a_lone_surrogate_is_a_400(client: TestClient) -> None:
    # The store could not write it as UTF-8: a 500.
    answer = client.put("/v1/opt-outs/global/+12125550100", content=b'{"note": "a\\ud800"}')
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"note": "lone surrogate U+D800 at offset 1"}
    assert client.get("/v1/opt-outs/global/+12125550100").status_code == 404


def test_a_list_name_with_a_final_newline_is_a_400(client: TestClient) -> None:
    # The pattern's $ matched before a final newline, so "global\n" was a list.
    answer = client.put("/v1/opt-outs/global%0A/+12125550100")
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"list": "letters, digits, . _ : @ -"}


@pytest.mark.parametrize("at", [12345, 1.5e9, True, ["2026-06-02T11:00:00Z"]])
def test_check_at_must_be_a_written_time(client: TestClient, at: object) -> None:
    # A number would have been read as seconds since 1970.
    answer = client.post("/v1/check", json=sms(at=at))
    assert answer.status_code == 400
    assert answer.json()["fields"]["at"] == (
        "give an ISO 8601 time, e.g. 2026-06-02T11:00:00-04:00"
    )


def test_a_control_character_in_from_is_a_400(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(**{"from": "+1415\x01"}))
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"from": "control character U+0001 at offset 5"}
    assert_nothing_happened(client)


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("+1 415 555 0177\x00\x00", "control character U+0000 at offset 15"),
        ("+14155550177\n", "control character U+000A at offset 12"),
        ("a@example.com\x85", "control character U+0085 at offset 13"),
        ("+1\u2028415 555 0177", "invisible character U+2028 at offset 2"),
        ("a@example.com\u200b", "invisible character U+200B at offset 13"),
    ],
)
def test_a_control_character_in_to_is_a_400(client: TestClient, to: str, why: str) -> None:
    # The rules would read the number without it, and the upstream get it.
    answer = client.post("/v1/messages", json=sms(to=to))
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"to": why}
    assert_nothing_happened(client)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/check"])
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_body_not_declared_json_is_a_415(
    client: TestClient, path: str, content_type: str
) -> None:
    # What a web page may post to a gateway on loopback without the browser
    # asking first: not taken as a message.
    answer = client.post(path, content=json.dumps(sms()), headers={"content-type": content_type})
    assert answer.status_code == 415
    assert answer.json()["fields"] == {"content-type": "not JSON"}
    assert answer.json()["error"] == (
        f"Content-Type '{content_type}' is not JSON: send the message as application/json"
    )
    assert_nothing_happened(client)


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "text/x+json"])
def test_json_or_no_declared_type_is_taken(client: TestClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    answer = client.post("/v1/check", content=json.dumps(sms()), headers=headers)
    assert answer.status_code == 200, answer.text
