"""Small HTTP helpers shared by the routes: bodies with a size limit, JSON answers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import InputError
from gateway.jsonio import dumps
from gateway.model import Decision


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = dumps(data)
    return Response(body, status, headers, media_type="application/json")


def decision_headers(decision: Decision) -> dict[str, str]:
    return {
        "X-Gateway-Decision": decision.decision.value,
        "X-Gateway-Decision-Id": decision.decision_id,
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (before reading it
    all when Content-Length says so)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InputError(f"the body is over the {limit} byte limit", {"body": "too large"}, 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(f"the body is over the {limit} byte limit", {"body": "too large"}, 413)
        chunks.append(chunk)
    return b"".join(chunks)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high}", {name: "invalid"})
    return int(raw)
