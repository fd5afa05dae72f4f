"""Property tests: whatever a sender sends, the answer is below 500, and a 4xx
is in the error shape of the API that was called. Bounded and derandomized, so
a run is quick and the same each time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.web.conftest import sms

# One gateway serves every example of a test (the `client` fixture): what
# earlier examples stored (counts, opt-outs) changes decisions, never the
# promise checked here.
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Raw(str):
    """A JSON fragment written as is: tokens json.dumps would not write."""


# What the standard parser (taken when orjson refuses a body) reads though it is
# not JSON: NaN, Infinity, 1e999; and what it chokes on, each once a 500: a
# number int() refuses, nesting past its recursion limit, and nesting it reads
# but a trimmed or held provider request cannot be written again with.
RAW = [
    Raw("NaN"),
    Raw("-Infinity"),
    Raw("1e999"),
    Raw("1" * 5000),
    Raw("[" * 2000 + "]" * 2000),
    Raw("[" * 200 + "]" * 200),
]
# Lone surrogates (sent as \ud800 escapes), control and format characters,
# digits str.isdigit takes and int() does not, separators of paths and queries.
ODD = ["\ud800", "\udfff", "a\udc00b", "\x00", "\x07", "\t", "\n", "\u202e", "\ufeff", "²", "٣"]
ODD += ["é", "😀", "/", "%", "?", "&", "=", "+", ".", "..", " ", "9" * 30, "9" * 5000]

texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(ODD),
    st.lists(st.sampled_from(ODD), min_size=1, max_size=4).map("".join),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**100),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.sampled_from(RAW),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def encode(value: Any) -> bytes:
    """JSON with ASCII escapes (a lone surrogate travels as \\ud800) and Raw
    fragments written as they are."""

    def text(v: Any) -> str:
        if isinstance(v, Raw):
            return str(v)
        if isinstance(v, dict):
            return "{" + ",".join(f"{json.dumps(k)}:{text(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ",".join(text(x) for x in v) + "]"
        return json.dumps(v)

    return text(value).encode()


def segment(value: str) -> str:
    """A path segment or query value, percent-encoded; a lone surrogate as the
    bytes it would be (which are not UTF-8)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


Edit = tuple[tuple[str | int, ...], Any]


def edited(doc: dict[str, Any], edits: list[Edit]) -> dict[str, Any]:
    """`doc` with the value at each path replaced (a path that is gone is skipped)."""
    doc = json.loads(json.dumps(doc))
    for path, value in edits:
        node: Any = doc
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(node, dict) or (isinstance(node, list) and path[-1] in range(len(node))):
                node[path[-1]] = value
    return doc


def edits(paths: list[tuple[str | int, ...]]) -> st.SearchStrategy[list[Edit]]:
    return st.lists(st.tuples(st.sampled_from(paths), values), max_size=3)


JSON = {"content-type": "application/json"}


# The native API --------------------------------------------------------------

NATIVE_FIELDS = [
    "channel", "to", "body", "from", "subject", "title", "category", "sender", "tags",
    "recipient_timezone", "idempotency_key", "at", "colour",
]  # fmt: skip


def assert_native_answer(status: int, body: Any) -> None:
    assert status < 500, body
    if status in (400, 413):  # bad input, or an invalid recipient's decision
        assert isinstance(body["error"], str) and body["error"]
        assert isinstance(body["fields"], dict)
    elif status in (403, 429):
        assert body["decision"] == "reject" and body["reasons"]
    elif status == 409:
        assert isinstance(body["error"], str) and body["error"]


@BOUNDED
@given(
    st.one_of(
        edits([(name,) for name in NATIVE_FIELDS]).map(lambda e: edited(sms(), e)),
        values,
    ),
    st.sampled_from(["/v1/messages", "/v1/check"]),
)
def test_any_json_to_the_native_api(client: TestClient, document: Any, path: str) -> None:
    answer = client.post(path, content=encode(document), headers=JSON)
    assert_native_answer(answer.status_code, answer.json())


@BOUNDED
@given(
    st.one_of(
        st.binary(max_size=64),
        st.sampled_from(RAW).map(lambda raw: raw.encode()),
        texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    st.sampled_from(["/v1/messages", "/v1/check"]),
)
def test_any_bytes_to_the_native_api(client: TestClient, raw: bytes, path: str) -> None:
    answer = client.post(path, content=raw, headers=JSON)
    assert_native_answer(answer.status_code, answer.json())


# The drop-in provider routes -------------------------------------------------

MAIL = {
    "personalizations": [{"to": [{"email": "a@example.com"}], "cc": [{"email": "c@example.com"}]}],
    "from": {"email": "news@example.com"},
    "subject": "Deals",
    "content": [{"type": "text/plain", "value": "Inside"}],
}
MAIL_PATHS: list[tuple[str | int, ...]] = [
    ("personalizations",), ("personalizations", 0), ("personalizations", 0, "to"),
    ("personalizations", 0, "to", 0, "email"), ("personalizations", 0, "cc", 0, "email"),
    ("personalizations", 0, "bcc"), ("personalizations", 0, "subject"), ("from",),
    ("from", "email"), ("subject",), ("content",), ("content", 0, "value"),
    ("categories",), ("template_id",), ("custom_args",),
]  # fmt: skip
PUSH = {"message": {"token": "device-1", "notification": {"title": "Hi", "body": "Sale"}}}
PUSH_PATHS: list[tuple[str | int, ...]] = [
    ("message",), ("message", "token"), ("message", "topic"), ("message", "condition"),
    ("message", "notification"), ("message", "notification", "body"),
    ("message", "notification", "title"), ("message", "data"), ("message", "android"),
    ("validate_only",), ("extra",),
]  # fmt: skip
GATEWAY_HEADERS = ["X-Message-Category", "X-Message-Tags", "X-Recipient-Timezone"]
headers = st.dictionaries(
    st.sampled_from([*GATEWAY_HEADERS, "Idempotency-Key"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20),
    max_size=2,
)


def sendgrid_shape(status: int, body: Any) -> None:
    assert body["errors"] and all(isinstance(e["message"], str) for e in body["errors"])


def fcm_shape(status: int, body: Any) -> None:
    assert body["error"]["code"] == status
    assert isinstance(body["error"]["status"], str) and body["error"]["message"]


def twilio_shape(status: int, body: Any) -> None:
    assert body["status"] == status and isinstance(body["code"], int) and body["message"]


def assert_provider_answer(status: int, content: bytes, shape: Callable[[int, Any], None]) -> None:
    assert status < 500, content
    if 400 <= status < 500:
        shape(status, json.loads(content))


@BOUNDED
@given(
    st.sampled_from(
        [("/v3/mail/send", MAIL, MAIL_PATHS), ("/v1/projects/p1/messages:send", PUSH, PUSH_PATHS)]
    ).flatmap(lambda r: st.tuples(st.just(r[0]), edits(r[2]).map(lambda e: edited(r[1], e)))),
    headers,
)
def test_any_json_to_sendgrid_and_fcm(
    client: TestClient, call: tuple[str, dict[str, Any]], extra: dict[str, str]
) -> None:
    path, document = call
    answer = client.post(path, content=encode(document), headers=JSON | extra)
    shape = sendgrid_shape if path.startswith("/v3/") else fcm_shape
    assert_provider_answer(answer.status_code, answer.content, shape)


@BOUNDED
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["To", "From", "Body", "MessagingServiceSid", "MediaUrl"]) | texts,
            texts,
        ),
        max_size=5,
    ),
    st.booleans(),
    texts,
    headers,
)
def test_any_form_to_twilio(
    client: TestClient,
    pairs: list[tuple[str, str]],
    complete: bool,
    account: str,
    extra: dict[str, str],
) -> None:
    if complete:
        pairs = [("To", "+12125550100"), ("From", "+12125550199"), ("Body", "Hi"), *pairs]
    form = "&".join(f"{segment(k)}={segment(v)}" for k, v in pairs)
    # "AC" first, and no "/" (not even as %2F): the path stays Twilio's.
    path = f"/2010-04-01/Accounts/AC{segment(account.replace('/', ''))}/Messages.json"
    content_type = {"content-type": "application/x-www-form-urlencoded"}
    answer = client.post(path, content=form.encode(), headers=content_type | extra)
    assert_provider_answer(answer.status_code, answer.content, twilio_shape)


# The admin API ---------------------------------------------------------------

FILTERS = ["recipient", "sender", "decision", "rule", "code", "since", "until", "cursor", "limit"]
query_values = st.one_of(
    texts,
    st.integers().map(str),
    st.sampled_from(["²", "٣", "-1", "0", "1001", "9" * 19, "9" * 30, "9" * 5000]),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]),
)


def assert_admin_answer(status: int, body: Any) -> None:
    assert status < 500, body
    if 400 <= status < 500:
        assert isinstance(body["error"], str) and body["error"]


@BOUNDED
@given(
    st.sampled_from(["/v1/decisions", "/v1/deferred"]),
    st.one_of(
        st.lists(st.tuples(st.sampled_from([*FILTERS, "status"]), query_values), max_size=2),
        st.lists(st.tuples(texts, query_values), max_size=2),
    ),
)
def test_any_query(client: TestClient, path: str, params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{segment(k)}={segment(v)}" for k, v in params)
    answer = client.get(f"{path}?{query}")
    assert_admin_answer(answer.status_code, answer.json())


@BOUNDED
@given(
    st.sampled_from(
        [
            ("GET", "/v1/decisions/{}"),
            ("GET", "/v1/deferred/{}"),
            ("DELETE", "/v1/deferred/{}"),
            ("GET", "/v1/opt-outs/global/{}"),
            ("PUT", "/v1/opt-outs/{}/+12125550100"),
            ("PUT", "/v1/opt-outs/global/{}"),
            ("DELETE", "/v1/opt-outs/{}/+12125550100"),
        ]
    ),
    texts,
)
def test_any_path_segment(client: TestClient, route: tuple[str, str], value: str) -> None:
    method, template = route
    answer = client.request(method, template.format(segment(value) or "x"))
    if answer.status_code != 204:
        assert_admin_answer(answer.status_code, answer.json())


@BOUNDED
@given(
    st.one_of(
        st.fixed_dictionaries({}, optional={"source": texts | values, "note": texts | values}),
        values,
    ).map(encode)
)
def test_any_opt_out_body(client: TestClient, body: bytes) -> None:
    answer = client.put("/v1/opt-outs/global/+12125550100", content=body)
    assert_admin_answer(answer.status_code, answer.json())


def assert_export_answer(status: int, content: bytes) -> None:
    """200 with the export (not JSON), or an error in the admin shape."""
    assert status < 500, content
    if status >= 400:
        assert_admin_answer(status, json.loads(content))


@BOUNDED
@given(
    st.one_of(
        st.lists(
            st.tuples(st.sampled_from([*FILTERS, "format"]), query_values | st.just("csv")),
            max_size=3,
        ),
        st.lists(st.tuples(texts, query_values), max_size=2),
    ),
)
def test_any_export_query(client: TestClient, params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{segment(k)}={segment(v)}" for k, v in params)
    answer = client.get(f"/v1/decisions/export?{query}")
    assert_export_answer(answer.status_code, answer.content)


@BOUNDED
@given(texts)
def test_any_list_name_to_import_and_export(client: TestClient, name: str) -> None:
    listed = client.get(f"/v1/opt-outs/{segment(name) or 'x'}/export")
    assert_export_answer(listed.status_code, listed.content)
    added = client.post(f"/v1/opt-outs/{segment(name) or 'x'}/import", content=b"+12125550100\n")
    assert_admin_answer(added.status_code, added.json())


csv_cells = st.one_of(texts, st.sampled_from(["address", "note", "recipient", "#", '"', ",", ""]))
csv_bodies = st.one_of(
    st.binary(max_size=200),
    st.lists(st.lists(csv_cells, max_size=3).map(",".join), max_size=6).map(
        lambda rows: "\n".join(rows).encode("utf-8", "surrogatepass")
    ),
)


@BOUNDED
@given(csv_bodies)
def test_any_import_body(client: TestClient, body: bytes) -> None:
    answer = client.post("/v1/opt-outs/fuzz/import", content=body)
    assert_admin_answer(answer.status_code, answer.json())


# The audit chain and one-click unsubscribe ---------------------------------------


@BOUNDED
@given(st.lists(st.tuples(st.sampled_from(["head", "x"]) | texts, query_values), max_size=2))
def test_any_verify_query(client: TestClient, params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{segment(k)}={segment(v)}" for k, v in params)
    answer = client.get(f"/v1/audit/verify?{query}")
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert_admin_answer(answer.status_code, answer.json())
    else:
        assert isinstance(answer.json()["intact"], bool)


FORM = {"content-type": "application/x-www-form-urlencoded"}


@BOUNDED
@given(
    texts,
    st.one_of(
        st.binary(max_size=64),
        st.just(b"List-Unsubscribe=One-Click"),
        texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    st.sampled_from(["", "multipart/form-data", "multipart/form-data; boundary=x"])
    | st.just(FORM["content-type"]),
)
def test_any_one_click_request(client: TestClient, token: str, body: bytes, kind: str) -> None:
    """A token that is not the gateway's never unsubscribes anyone, whatever comes with it."""
    answer = client.post(
        f"/v1/unsubscribe?token={segment(token)}", content=body, headers={"content-type": kind}
    )
    assert answer.status_code in (400, 413), answer.text
    assert_admin_answer(answer.status_code, answer.json())


@BOUNDED
@given(
    st.one_of(
        edits([("address",), ("list",), ("extra",)]).map(
            lambda e: edited({"address": "ann@example.com"}, e)
        ),
        values,
    ).map(encode)
)
def test_any_unsubscribe_link_request(client: TestClient, body: bytes) -> None:
    answer = client.post("/v1/unsubscribe/links", content=body, headers=JSON)
    assert answer.status_code in (200, 400, 413), answer.text
    if answer.status_code == 200:
        assert answer.json()["url"].startswith("http://testserver/v1/unsubscribe?token=")
    else:
        assert_admin_answer(answer.status_code, answer.json())
