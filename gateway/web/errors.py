"""The gateway's exceptions as HTTP answers: a clear reason, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import (
    AuditUnavailable,
    ConfigError,
    ConflictError,
    InputError,
    StoreUnavailable,
)
from gateway.web.http import json_response

log = logging.getLogger("gateway")


async def input_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return json_response({"error": str(exc), "fields": exc.fields}, exc.status)


async def conflict(request: Request, exc: Exception) -> Response:
    return json_response({"error": str(exc)}, 409)


async def unavailable(request: Request, exc: Exception) -> Response:
    what = "state store" if isinstance(exc, StoreUnavailable) else "audit trail"
    log.warning("refusing a request: %s unreachable: %s", what, exc)
    rt = getattr(request.app.state, "runtime", None)
    if rt is not None:
        rt.gateway.metrics.refused_unavailable("store" if what == "state store" else "trail")
    body = {
        "error": f"the {what} is unreachable; nothing was sent",
        "code": "store_unavailable",
        "detail": str(exc),
    }
    headers = {"Retry-After": "1", "X-Gateway-Decision": "reject"}
    decision_id = getattr(exc, "decision_id", None)
    if decision_id:
        headers["X-Gateway-Decision-Id"] = decision_id
        body["decision_id"] = decision_id
    return json_response(body, 503, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))


async def config_error(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"the gateway is misconfigured: {exc}"}, 500)


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return json_response({"error": "internal error; nothing was sent"}, 500)


HANDLERS = {
    InputError: input_error,
    ConflictError: conflict,
    StoreUnavailable: unavailable,
    AuditUnavailable: unavailable,
    ConfigError: config_error,
    HTTPException: http_error,
    Exception: unexpected,
}
