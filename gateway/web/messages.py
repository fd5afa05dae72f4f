"""The native API: `POST /v1/messages`, `POST /v1/check`, and the sandbox's inbox."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from gateway.adapters.native import (
    CheckRequest,
    NativeMessage,
    decode_json,
    parse_native,
    to_message,
)
from gateway.errors import AuditUnavailable, InvalidRecipient, StoreUnavailable
from gateway.jsonio import dumps
from gateway.model import Channel, Code, Message, Reason, Verdict
from gateway.runtime import Runtime
from gateway.service import Sent
from gateway.settings import Route
from gateway.upstream.base import Outbound
from gateway.web.auth import bound_senders, may_act
from gateway.web.http import (
    JsonAnswer,
    decision_headers,
    json_response,
    read_body,
    require_json,
)
from gateway.web.once import once, scope_key

_REJECT = (b"x-gateway-decision", b"reject")


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def native_route(rt: Runtime) -> Route:
    route = rt.settings.native_route()
    if route is None:  # as for any other adapter's path without a route
        raise HTTPException(404, "no route with adapter: native is configured")
    return route


def sender_and_category(rt: Runtime, item: NativeMessage, route: Route) -> tuple[str, str]:
    """The message's sender and category, with the route's and sender's defaults."""
    sender = item.sender or route.default_sender or "default"
    configured = rt.settings.senders.get(sender)
    category = (
        item.category
        or route.default_category
        or (configured.default_category if configured else None)
        or "marketing"
    )
    return sender, category.lower()


def _as_bound(rt: Runtime, item: NativeMessage, route: Route, scope: Scope) -> None:
    """A key bound to senders sends as one of them: as its first one when the
    message names none; Forbidden when it names another."""
    bound = bound_senders(scope)
    if not bound:
        return
    if item.sender is None:
        item.sender = bound[0]
    may_act(scope, sender_and_category(rt, item, route)[0])


def build_message(rt: Runtime, item: NativeMessage, route: Route) -> Message:
    sender, category = sender_and_category(rt, item, route)
    return to_message(item, route=route.name, sender=sender, category=category)


async def invalid_recipient(
    rt: Runtime,
    item: NativeMessage,
    route: Route,
    exc: InvalidRecipient,
    *,
    record: bool,
    at: datetime | None = None,
) -> Response:
    """400 with a decision that rejects with invalid_recipient; a send records it."""
    sender, category = sender_and_category(rt, item, route)
    head = {
        "route": route.name,
        "sender": sender,
        "channel": Channel(item.channel),
        "category": category,
        "address": item.to,
    }
    reason = Reason("recipient", Code.INVALID_RECIPIENT, str(exc))
    decision = await rt.gateway.refuse_unparsed(head, reason, record=record, at=at)
    body = decision.to_json() | {"error": str(exc), "fields": exc.fields}
    return JsonAnswer(dumps(body), 400, decision_headers(decision))


async def check(request: Request) -> Response:
    rt = runtime(request)
    raw = await read_body(request, rt.settings.max_body_bytes)
    return await check_body(rt, raw, request.scope)


async def send(request: Request) -> Response:
    rt = runtime(request)
    raw = await read_body(request, rt.settings.max_body_bytes)
    return await send_body(rt, raw, request.scope)


async def check_body(rt: Runtime, raw: bytes, scope: Scope) -> Response:
    """`POST /v1/check` once its body is in; shared by starlette's route and
    the plain ASGI one (gateway/web/direct.py)."""
    require_json(scope)
    item = parse_native(decode_json(raw), CheckRequest)
    route = native_route(rt)
    _as_bound(rt, item, route, scope)
    at = item.at.astimezone(UTC) if item.at else None
    try:
        message = build_message(rt, item, route)
    except InvalidRecipient as exc:
        return await invalid_recipient(rt, item, route, exc, record=False, at=at)
    try:
        decision = await rt.gateway.check(message, at)
    except StoreUnavailable as exc:
        await _explain(rt, message, exc, record=False)
        raise
    return JsonAnswer(dumps(decision.to_json()), 200, decision_headers(decision))


async def send_body(rt: Runtime, raw: bytes, scope: Scope) -> Response:
    """`POST /v1/messages` once its body is in (see `check_body`)."""
    require_json(scope)
    item = parse_native(decode_json(raw), NativeMessage)
    route = native_route(rt)
    _as_bound(rt, item, route, scope)
    if item.idempotency_key is None:
        return await _decide_and_send(rt, item, route, raw)
    # A refusal of the recipient is an answer too: repeated, it is replayed.
    key = scope_key(sender_and_category(rt, item, route)[0], item.idempotency_key)
    fingerprint = _fingerprint(item)
    try:
        return await once(rt, key, fingerprint, lambda: _decide_and_send(rt, item, route, raw))
    except StoreUnavailable as exc:
        if exc.decision is None:  # the key could not be claimed: refused as a decision too
            with contextlib.suppress(InvalidRecipient):
                await _explain(rt, build_message(rt, item, route), exc, record=True)
        raise


async def _decide_and_send(rt: Runtime, item: NativeMessage, route: Route, raw: bytes) -> Response:
    try:
        message = build_message(rt, item, route)
    except InvalidRecipient as exc:
        return await invalid_recipient(rt, item, route, exc, record=True)
    return await _send(rt, item, message, route, raw)


async def _send(
    rt: Runtime, item: NativeMessage, message: Message, route: Route, raw: bytes
) -> Response:
    url = "sandbox" if route.upstream == "sandbox" else route.upstream
    outbound = Outbound("POST", url, (("content-type", "application/json"),), raw)

    def payload() -> dict[str, Any]:
        return {
            "kind": "native",
            "route": route.name,
            "message": item.model_dump(by_alias=True, exclude_none=True),
            # What goes upstream when the window opens: the request as sent.
            "body": raw.decode("utf-8"),  # valid UTF-8: decode_json took it
        }

    try:
        sent = await rt.gateway.submit(message, outbound, rt.upstream(route), payload)
    except (StoreUnavailable, AuditUnavailable) as exc:
        await _explain(rt, message, exc, record=isinstance(exc, StoreUnavailable))
        raise
    return render(sent)


async def _explain(
    rt: Runtime, message: Message, exc: StoreUnavailable | AuditUnavailable, *, record: bool
) -> None:
    """Give a 503 its body: the message's refusal as a decision, recorded
    (best effort) when `record`, and then with its id (`/v1/check` keeps its
    unrecorded id, as its decisions always do). A message whose decision
    was recorded before its hold failed has it already, amended."""
    if exc.decision_id is not None:
        return
    try:
        refusal = rt.gateway.unavailable(message, exc)
    except StoreUnavailable:  # not even the pseudonymization key is loaded yet
        return
    exc.decision = refusal.to_json()
    if record:
        kept = await rt.gateway.record_refusal(refusal)
        exc.decision_id = refusal.decision_id if kept else None
        exc.decision["decision_id"] = exc.decision_id
    elif isinstance(exc, AuditUnavailable):
        exc.decision["decision_id"] = None


def render(sent: Sent) -> Response:
    decision = sent.decision
    body = decision.to_json()
    headers = decision_headers(decision)
    if decision.decision is Verdict.DEFER:
        return JsonAnswer(dumps(body), 202, headers)
    if decision.decision is Verdict.REJECT:
        if decision.capped_only and decision.retry_at is not None:
            wait = math.ceil((decision.retry_at - decision.at).total_seconds())
            headers.append((b"retry-after", str(max(1, wait)).encode()))
            return JsonAnswer(dumps(body), 429, headers)
        return JsonAnswer(dumps(body), 403, headers)
    if sent.reply is None:
        status = 504 if decision.reasons[-1].code is Code.UPSTREAM_UNKNOWN else 502
        return JsonAnswer(dumps(body), status, headers)
    body["upstream"] = dict(body["upstream"] or {}) | {"body": _json_or_text(sent.reply.body)}
    return JsonAnswer(dumps(body), sent.reply.status, headers)


def _json_or_text(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def _fingerprint(item: NativeMessage) -> str:
    canonical = json.dumps(
        item.model_dump(exclude={"idempotency_key"}), sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def sandbox_messages(request: Request) -> Response:
    rt = runtime(request)
    return json_response({"messages": rt.sandbox.messages()})
