"""Idempotency: a request repeated with the same key from the same sender within
the window gets the first answer again, whatever API it came through."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from gateway.errors import ConflictError, StoreUnavailable
from gateway.runtime import Runtime
from gateway.service import ms
from gateway.store.base import CUT_SHORT, SCOPE, IdempotencyStatus

IN_FLIGHT_WAIT = 30.0  # seconds a duplicate waits for the first request's answer
log = logging.getLogger(__name__)


def scope_key(sender: str, key: str) -> str:
    # "/" is in no sender name, though ":" may be: sender "a:b" with key "k"
    # and sender "a" with key "b:k" must not share a record.
    return f"{SCOPE}{sender}/{key}"


CUT_SHORT_ERROR = (
    "the first request with this idempotency key was cut short when the gateway stopped;"
    " it may have been sent: look for its decision (GET /v1/decisions) before sending it"
    " again with a new key"
)


async def once(
    rt: Runtime,
    key: str,
    fingerprint: str,
    act: Callable[[], Awaitable[Response]],
    ttl: int | None = None,
) -> Response:
    """Run `act` once per `key` (see `scope_key`) within the idempotency window
    (or `ttl` seconds); repeats get the first answer, another request with
    the same key a ConflictError (409), and a repeat that arrives while the
    first is in flight waits for its answer. An answer saying nothing was
    sent (502, 503) is not kept, so a retry may try again."""
    ttl_ms = (ttl or rt.settings.idempotency_ttl) * 1000
    deadline = asyncio.get_running_loop().time() + IN_FLIGHT_WAIT
    while True:
        state = await rt.store.idempotency_begin(key, fingerprint, ms(rt.clock.now()), ttl_ms)
        if state.status is IdempotencyStatus.NEW:
            claim = state.claim
            break
        if state.status is IdempotencyStatus.CONFLICT:
            raise ConflictError("this idempotency key was already used with a different message")
        if state.status is IdempotencyStatus.DONE and state.response == CUT_SHORT:
            raise ConflictError(CUT_SHORT_ERROR)  # answered in the API's own shape
        if state.status is IdempotencyStatus.DONE and state.response is not None:
            return replay(state.response)
        if asyncio.get_running_loop().time() > deadline:
            raise ConflictError("a request with this idempotency key is still in flight")
        await asyncio.sleep(0.02)
    try:
        response = await act()
    except BaseException:
        with contextlib.suppress(StoreUnavailable):  # the act's own error is the answer
            await rt.store.idempotency_abandon(key, claim)
        raise
    try:
        if response.status_code in (502, 503):
            await rt.store.idempotency_abandon(key, claim)
        else:
            await rt.store.idempotency_finish(key, _stored(response), ms(rt.clock.now()), ttl_ms)
    except StoreUnavailable as exc:
        # The message is decided, maybe sent: its answer is the sender's even
        # when it cannot be kept for repeats (a repeat then waits, and is told
        # the key is still in flight, until the key expires).
        log.warning("idempotency key %s: the answer was not kept: %s", key, exc)
    return response


def _stored(response: Response) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "status": response.status_code,
        "headers": {k: v for k, v in response.headers.items() if k.lower() != "content-length"},
    }
    body = bytes(response.body)
    try:
        stored["body"] = body.decode("utf-8")
    except UnicodeDecodeError:  # an upstream's compressed or binary answer
        stored["body_b64"] = base64.b64encode(body).decode("ascii")
    return stored


def replay(stored: dict[str, Any]) -> Response:
    headers = dict(stored["headers"]) | {"Idempotent-Replayed": "true"}
    if "body_b64" in stored:
        body = base64.b64decode(stored["body_b64"])
    else:
        body = stored["body"].encode("utf-8")
    return Response(body, stored["status"], headers)
