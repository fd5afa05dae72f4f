"""POST /v1/messages and /v1/check are served as plain ASGI ahead of starlette's
stack (gateway/web/direct.py). Each request here goes both ways, straight to
the app and through starlette's middleware and router, and the two answers
must match message for message: status, header list, body (ids aside), and
the exception a server would see."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import AuditUnavailable, StoreUnavailable
from tests.web.conftest import Make, sms
from tests.web.test_auth import keys

Headers = list[tuple[bytes, bytes]]


@dataclass
class Exchange:
    status: int | None
    headers: Headers
    body: Any
    raised: str | None


def ask(
    client: TestClient,
    path: str,
    chunks: list[bytes],
    headers: Headers | None = None,
    *,
    starlette: bool = False,
    length: bool = True,
    disconnect: bool = False,
    root_path: str = "",
) -> Exchange:
    """One POST to the running app, on the event loop it runs on, with no HTTP
    client in between: what the app sends is what a server puts on the wire."""
    body = b"".join(chunks)
    sent_headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if length:
        sent_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "server": ("testserver", 80),
        "client": ("testclient", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": root_path,
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "query_string": b"",
        "headers": sent_headers + (headers or []),
    }
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        incoming = [{"type": "http.request", "body": chunks[0], "more_body": True}]
        incoming.append({"type": "http.disconnect"})
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> str | None:
        try:
            if starlette:  # what GatewayApp hands every other request to
                await Starlette.__call__(client.app, scope, receive, send)  # type: ignore[arg-type]
            else:
                await client.app(scope, receive, send)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    assert client.portal is not None
    raised = client.portal.call(run)
    return _exchange(sent, raised)


def _exchange(sent: list[Message], raised: str | None) -> Exchange:
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Exchange(
        start["status"] if start else None,
        [
            (k, b"<id>" if k == b"x-gateway-decision-id" else v)
            for k, v in (start["headers"] if start else [])
        ],
        _masked(json.loads(body)) if body else None,
        raised,
    )


def _masked(data: Any) -> Any:
    """Ids that differ from one request to the next, whichever way it went."""
    if isinstance(data, dict):
        return {
            k: "<id>" if k in ("decision_id", "trace_id", "id", "message_id") and v else _masked(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_masked(v) for v in data]
    return data


def both(client: TestClient, path: str, chunks: list[bytes], **kw: Any) -> Exchange:
    """The answer, after checking that starlette's route gives the same one."""
    direct = ask(client, path, chunks, **kw)
    assert ask(client, path, chunks, starlette=True, **kw) == direct
    return direct


def raw(**fields: Any) -> bytes:
    return json.dumps(sms(**fields)).encode()


BAD_BODIES = [
    b"{not json",
    b"[1, 2]",
    b"\xff\xfe",
    b"",
    raw(channel="fax"),
    raw(colour="red", body=5),
    raw(body="a\ud800b"),
    raw(to="+1212555\ud8000"),
    raw(to="+1 555"),
    json.dumps({"channel": "email", "to": "a@example.com", "body": "x"}).encode(),
    json.dumps({"channel": "email", "to": "not-an-address", "subject": "s", "body": "b"}).encode(),
    raw(at="yesterday"),
]


@pytest.mark.parametrize("path", ["/v1/check", "/v1/messages"])
@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_input_gets_the_same_answer(client: TestClient, path: str, body: bytes) -> None:
    answer = both(client, path, [body])
    assert answer.status == 400
    assert answer.raised is None


@pytest.mark.parametrize("path", ["/v1/check", "/v1/messages"])
def test_the_body_limit_is_the_same(client: TestClient, path: str) -> None:
    huge = raw(body="x" * 300_000)
    declared = both(client, path, [huge])
    streamed = both(client, path, [huge[:150_000], huge[150_000:]], length=False)
    assert declared.status == streamed.status == 413
    assert declared.body == {
        "error": "the body is over the 262144 byte limit",
        "fields": {"body": "too large"},
    }
    body = raw(category="transactional")  # no cap counts it, so both ways answer alike
    in_pieces = both(client, path, [body[:10], body[10:20], body[20:]], length=False)
    assert in_pieces.status in (200, 201)


def test_decisions_get_the_same_answer(client: TestClient) -> None:
    allowed = both(client, "/v1/check", [raw()])
    assert allowed.status == 200
    assert [k for k, _ in allowed.headers] == [
        b"x-gateway-decision",
        b"x-gateway-decision-id",
        b"content-length",
        b"content-type",
    ]
    assert both(client, "/v1/check", [raw(at="2026-06-02T23:30:00-04:00")]).status == 200
    assert both(client, "/v1/messages", [raw(body="guaranteed returns")]).status == 403
    assert both(client, "/v1/messages", [raw(category="transactional")]).status == 201


def test_a_cap_and_a_replay_get_the_same_answer(client: TestClient) -> None:
    for _ in range(2):
        assert ask(client, "/v1/messages", [raw()]).status == 201
    capped = both(client, "/v1/messages", [raw()])
    assert capped.status == 429
    assert capped.headers[2] == (b"retry-after", b"86401")  # 24 h and 1 ms, rounded up
    first = ask(client, "/v1/messages", [raw(to="+12125550111", idempotency_key="k")])
    replayed = both(client, "/v1/messages", [raw(to="+12125550111", idempotency_key="k")])
    assert replayed.body == first.body
    assert (b"idempotent-replayed", b"true") in replayed.headers
    conflict = both(client, "/v1/messages", [raw(to="+12125550111", idempotency_key="k", body="b")])
    assert conflict.status == 409


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("wrong", 401), ("aud1t", 403), ("s3cret", 200), ("r00t", 200)],
)
def test_keys_get_the_same_answer(make_client: Make, key: str | None, status: int) -> None:
    roles = keys(s3cret="sender", aud1t="auditor", r00t="admin")
    client = make_client(env={"GATEWAY_API_KEYS": roles})
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    assert both(client, "/v1/check", [raw()], headers=headers).status == status
    assert both(client, "/v1/check", [b"{bad"], headers=headers).status == (
        400 if status == 200 else status
    )


def failing(error: Exception) -> Callable[..., Any]:
    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RuntimeError("boom"), 500),
        (StoreUnavailable("connection refused"), 503),
        (AuditUnavailable("disk full"), 503),
    ],
)
def test_errors_get_the_same_answer(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    monkeypatch.setattr(rt.gateway, "check", failing(error))
    answer = both(client, "/v1/check", [raw()])
    assert answer.status == status
    if status == 500:
        assert answer.body == {"error": "internal error; nothing was sent"}
        assert answer.raised == "RuntimeError: boom"  # the server still hears of it
    else:
        assert answer.raised is None


def test_a_client_that_leaves_mid_body(client: TestClient) -> None:
    answer = both(client, "/v1/messages", [raw()[:10], raw()[10:]], disconnect=True)
    assert (answer.status, answer.raised) == (400, None)  # nothing decided, one log line


def test_a_client_that_leaves_another_route_mid_body_is_one_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can hang up mid-body: a line in the log, not a traceback."""
    with caplog.at_level(logging.INFO, logger="gateway"):
        answer = ask(client, "/v1/opt-outs/global/import", [b"+1212", b"5550100"], disconnect=True)
    assert (answer.status, answer.raised) == (400, None)
    [said] = [r for r in caplog.records if "left before" in r.getMessage()]
    assert said.exc_info is None and said.levelno == logging.INFO
    assert not [r for r in caplog.records if r.exc_info]


def test_under_a_root_path_starlette_serves_the_same_answer(client: TestClient) -> None:
    under = ask(client, "/v1/check", [b"{bad"], root_path="/gw")
    assert under == ask(client, "/v1/check", [b"{bad"])


def test_the_hot_routes_never_reach_starlettes_stack(client: TestClient) -> None:
    app: Any = client.app

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError(f"{scope['method']} {scope['path']} went through starlette")

    app.middleware_stack = refuse
    assert client.post("/v1/check", json=sms()).status_code == 200
    assert client.post("/v1/messages", json=sms()).status_code == 201
    with pytest.raises(AssertionError):
        client.get("/v1/messages")
