"""Small HTTP helpers shared by the routes: bodies with a size limit, JSON answers."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from gateway.errors import InputError
from gateway.jsonio import dumps
from gateway.model import Decision, Verdict

RawHeaders = list[tuple[bytes, bytes]]

_CONTENT_TYPE = (b"content-type", b"application/json")
_VERDICTS = {verdict: (b"x-gateway-decision", verdict.value.encode()) for verdict in Verdict}


class JsonAnswer(Response):
    """A JSON response with the header list starlette's Response would build
    (the given headers, then content-length, then content-type), made without
    its general path: the hot routes make one per request. It takes `headers`
    (lowercase names, never content-length or content-type) and appends to it."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int, headers: RawHeaders) -> None:
        # Response.__init__ is skipped on purpose: everything it would set is set here.
        self.status_code = status
        self.body = body
        self.background = None
        if not (status < 200 or status in (204, 304)):
            headers.append((b"content-length", str(len(body)).encode()))
        headers.append(_CONTENT_TYPE)
        self.raw_headers = headers


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return JsonAnswer(dumps(data), status, raw)


def decision_headers(decision: Decision) -> RawHeaders:
    """X-Gateway-Decision and X-Gateway-Decision-Id, as raw header pairs."""
    return [
        _VERDICTS[decision.decision],
        (b"x-gateway-decision-id", decision.decision_id.encode("latin-1")),
    ]


def too_large(limit: int) -> InputError:
    return InputError(f"the body is over the {limit} byte limit", {"body": "too large"}, 413)


def declared_length(scope: Scope) -> str | None:
    """The Content-Length header as text (the first one, as starlette's Headers
    reads it), without building a mapping of every header."""
    headers: RawHeaders = scope["headers"]
    for name, value in headers:
        if name == b"content-length":
            return value.decode("latin-1")
    return None


def require_json(scope: Scope) -> None:
    """InputError (415) unless the body is declared JSON, or not declared at
    all. A web page may post text/plain or a form to a gateway on loopback
    without the browser asking first (no CORS preflight): such a body is not
    taken as a message."""
    headers: RawHeaders = scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media == b"application/json" or media.endswith(b"+json"):
                return
            shown = value.decode("latin-1")[:100]
            raise InputError(
                f"Content-Type '{shown}' is not JSON: send the message as application/json",
                {"content-type": "not JSON"},
                415,
            )


def whole_number(text: str) -> bool:
    """ASCII digits that int() reads without fuss. str.isdigit alone also takes
    "²", which int() refuses, and digits past int()'s length limit (4300)."""
    return text.isascii() and text.isdigit() and len(text) <= 18  # 18 digits fit in 64 bits


def _over(declared: str | None, limit: int) -> bool:
    if declared is None or not (declared.isascii() and declared.isdigit()):
        return False
    return not whole_number(declared) or int(declared) > limit


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (before reading it
    all when Content-Length says so)."""
    if _over(request.headers.get("content-length"), limit):
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """`read_body` for a plain ASGI route: the same limit and errors, and the
    same ClientDisconnect when the client leaves before the body is in."""
    if _over(declared_length(scope), limit):
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not whole_number(raw) or not low <= int(raw) <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high}", {name: "invalid"})
    return int(raw)
