"""The gateway's exceptions as HTTP answers: a clear reason, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.errors import (
    AuditUnavailable,
    ConfigError,
    ConflictError,
    Forbidden,
    InputError,
    StoreUnavailable,
    Unavailable,
)
from gateway.web.http import json_response

log = logging.getLogger("gateway")


# The native API's message paths: every answer there says what became of
# the message, even one that never became a decision (malformed, 409).
_MESSAGE_PATHS = frozenset({"/v1/messages", "/v1/check"})


def _refused(request: Request) -> dict[str, str]:
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root):  # starlette keeps the root path in it
        path = path[len(root) :]
    return {"X-Gateway-Decision": "reject"} if path in _MESSAGE_PATHS else {}


async def input_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    body = {"error": str(exc), "fields": exc.fields}
    return json_response(body, exc.status, _refused(request))


async def conflict(request: Request, exc: Exception) -> Response:
    return json_response({"error": str(exc)}, 409, _refused(request))


async def forbidden(request: Request, exc: Exception) -> Response:
    return json_response({"error": str(exc)}, 403, _refused(request))


# The paths that send messages (native and drop-in): only their refusals are
# messages refused, counted in gateway_unavailable_total and "nothing was sent".
_SENDING = ("/2010-04-01/", "/v3/mail/send", "/v1/projects/")


def _sends(request: Request) -> bool:
    path = request.url.path
    return request.method == "POST" and (path == "/v1/messages" or path.startswith(_SENDING))


async def unavailable(request: Request, exc: Exception) -> Response:
    what = "state store" if isinstance(exc, StoreUnavailable) else "audit trail"
    log.warning("refusing a request: %s unreachable: %s", what, exc)
    rt = getattr(request.app.state, "runtime", None)
    sends = _sends(request)
    if rt is not None and sends:
        rt.gateway.metrics.refused_unavailable("store" if what == "state store" else "trail")
    assert isinstance(exc, Unavailable)
    body = {
        "error": f"the {what} is unreachable" + ("; nothing was sent" if sends else ""),
        "code": "store_unavailable",
        "detail": str(exc),
    }
    if exc.decision is not None:  # a message: the answer is its refusal (section 5)
        body = exc.decision | body
    headers = {"Retry-After": "1", "X-Gateway-Decision": "reject"}
    decision_id = exc.decision_id or (exc.decision or {}).get("decision_id")
    if decision_id:
        headers["X-Gateway-Decision-Id"] = decision_id
        body["decision_id"] = decision_id
    return json_response(body, 503, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))


async def config_error(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"the gateway is misconfigured: {exc}"}, 500)


async def gone(request: Request, exc: Exception) -> Response:
    """The client left before its request was read: nothing was decided, and
    nobody reads the answer. One line, not a traceback: anyone can cause it."""
    log.info("%s %s: the client left before its request was read", request.method, request.url.path)
    return json_response({"error": "the request was not read whole"}, 400)


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return json_response({"error": "internal error; nothing was sent"}, 500)


HANDLERS = {
    InputError: input_error,
    ConflictError: conflict,
    Forbidden: forbidden,
    StoreUnavailable: unavailable,
    AuditUnavailable: unavailable,
    ConfigError: config_error,
    HTTPException: http_error,
    ClientDisconnect: gone,
    Exception: unexpected,
}
