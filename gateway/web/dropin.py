"""Drop-in provider routes: Twilio, SendGrid and FCM requests are checked and
then forwarded, refused or held, and always answered in the provider's shape.

Every answer carries X-Gateway-Decision (allow, reject, defer, or partial when
recipients of one request fared differently), X-Gateway-Decision-Id (one id
per recipient, comma separated) and, when partial, X-Gateway-Dropped: for
each recipient not sent now, its decision id, verdict, field, reason code and
rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from gateway.adapters.base import Adapter, Answer, Context, Incoming, Item
from gateway.errors import (
    AuditUnavailable,
    ConflictError,
    Forbidden,
    InputError,
    StoreUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.model import Action, Channel, Code, Decision, Reason, Verdict
from gateway.relay import (
    ADAPTERS,
    IDEMPOTENCY_HEADERS,
    context,
    forwardable,
    held_payload,
    identify,
    outbound,
    senders_named,
)
from gateway.runtime import Runtime
from gateway.service import Batch
from gateway.settings import Route
from gateway.upstream.base import Outbound
from gateway.web.auth import bound_senders, may_act
from gateway.web.http import read_body
from gateway.web.once import once, scope_key

Headers = list[tuple[str, str]]
REJECT = ("X-Gateway-Decision", "reject")


async def twilio(request: Request) -> Response:
    return await handle(request, "twilio")


async def sendgrid(request: Request) -> Response:
    return await handle(request, "sendgrid")


async def fcm(request: Request) -> Response:
    return await handle(request, "fcm")


async def handle(request: Request, name: str) -> Response:
    """Every failure the gateway answers itself comes back in the provider's shape."""
    rt: Runtime = request.app.state.runtime
    adapter = ADAPTERS[name]
    if request.method != "POST":
        answer = adapter.error(405, f"{request.method} is not allowed here; send with POST")
        return respond(answer.with_headers([("Allow", "POST"), REJECT]))
    route = rt.settings.adapter_route(name)
    if route is None:
        answer = adapter.error(404, f"no {name} route is configured on this gateway")
        return respond(answer.with_headers([REJECT]))
    if any(value in (".", "..") for value in request.path_params.values()):
        # The upstream's client would fold `Accounts/../Messages.json` into
        # another path: no provider names an account or project so.
        return respond(
            adapter.error(404, f"no such path: {request.url.path}").with_headers([REJECT])
        )
    try:
        return await _handle(rt, request, adapter, route)
    except InputError as exc:
        return respond(adapter.bad_input(exc).with_headers([REJECT]))
    except ConflictError as exc:
        return respond(adapter.error(409, str(exc)).with_headers([REJECT]))
    except Forbidden as exc:
        return respond(adapter.error(403, str(exc)).with_headers([REJECT]))
    except (StoreUnavailable, AuditUnavailable) as exc:
        what = "state store" if isinstance(exc, StoreUnavailable) else "audit trail"
        answer = adapter.error(503, f"the gateway's {what} is unreachable; nothing was sent")
        headers = [("Retry-After", "1"), ("X-Gateway-Decision", "reject")]
        recorded = exc.decision_id if isinstance(exc, StoreUnavailable) else None
        if recorded:
            headers.append(("X-Gateway-Decision-Id", recorded))
        return respond(answer.with_headers(headers))


async def _handle(rt: Runtime, request: Request, adapter: Adapter, route: Route) -> Response:
    raw = await read_body(request, rt.settings.max_body_bytes)
    unknown = [name for name in request.query_params if name not in adapter.query]
    if unknown:
        raise InputError(
            f"query parameter '{unknown[0]}' is not taken: give the message in the body",
            {unknown[0]: "not taken"},
        )
    for name in (b"authorization", b"content-type"):
        if [key for key, _ in request.headers.raw if key == name][1:]:
            # The gateway reads one; the provider might read the other (the
            # sender by another credential, the body as another type).
            shown = name.decode().title()
            raise InputError(f"{shown} is given more than once", {shown: "repeated"})
    incoming = Incoming(
        request.method,
        _raw_path(request),
        forwardable(request.headers.items()),
        raw,
        dict(request.path_params),
    )
    sender = identify(rt.settings, route, incoming, bound_senders(request.scope))
    # A bound key acts for its senders only, whichever of them the request names:
    # a credential of its own must not carry another sender's account along.
    for named in dict.fromkeys([sender, *senders_named(rt.settings, incoming)]):
        may_act(request.scope, named)
    ctx = context(rt.settings, route, sender, request.headers)
    items: list[Item] = []
    try:
        items = adapter.items(incoming, ctx)
    except InputError as exc:
        if exc.unparsed is None:
            raise
        refused = exc

        async def act() -> Response:
            return await _refuse_recipient(rt, adapter, incoming, ctx, refused)
    else:

        async def act() -> Response:
            if adapter.dry_run(incoming):
                return await _dry_run(rt, adapter, route, incoming, items)
            return await _send(rt, adapter, route, incoming, ctx, items)

    key = next((v for v in map(incoming.header, IDEMPOTENCY_HEADERS) if v), None)
    if key is None:
        return await act()
    try:
        return await once(rt, scope_key(sender, key), _fingerprint(incoming, ctx), act)
    except StoreUnavailable as exc:
        if exc.decision_id is None and not adapter.dry_run(incoming):
            # The key could not be claimed: each recipient's refusal recorded, as without one.
            with contextlib.suppress(StoreUnavailable):
                ids = [await rt.gateway.record_store_failure(i.message, exc) for i in items]
                exc.decision_id = ",".join(i for i in ids if i) or None
        raise


async def _refuse_recipient(
    rt: Runtime, adapter: Adapter, incoming: Incoming, ctx: Context, exc: InputError
) -> Response:
    """A recipient that is not one (a number that is not a number): the
    provider's own error, and a decision rejecting with invalid_recipient,
    recorded as the native API records it."""
    assert exc.unparsed is not None
    channel, address = exc.unparsed
    head = {
        "route": ctx.route,
        "sender": ctx.sender,
        "channel": Channel(channel),
        "category": ctx.category,
        "address": address,
    }
    reason = Reason("recipient", Code.INVALID_RECIPIENT, str(exc))
    # A dry run is never recorded, its recipient's refusal neither.
    record = not adapter.dry_run(incoming)
    decision = await rt.gateway.refuse_unparsed(head, reason, record=record)
    headers = [REJECT, ("X-Gateway-Decision-Id", decision.decision_id)]
    return respond(adapter.bad_input(exc, decision).with_headers(headers))


async def _send(
    rt: Runtime, adapter: Adapter, route: Route, incoming: Incoming, ctx: Context, items: list[Item]
) -> Response:
    def build(allowed: list[int]) -> tuple[Outbound, dict[int, int]]:
        body, dropped = adapter.forward_body(incoming, allowed)
        return outbound(route, adapter, incoming, body), dropped

    try:
        batch = await rt.gateway.submit_many(
            [item.message for item in items],
            build,
            lambda i: held_payload(route, adapter, incoming, ctx, i),
            rt.upstream(route),
        )
    except StoreUnavailable as exc:
        if exc.decision_id is None:  # else the decisions are recorded, amended to say so
            ids = [await rt.gateway.record_store_failure(item.message, exc) for item in items]
            exc.decision_id = ",".join(i for i in ids if i) or None
        raise
    return respond(render(adapter, incoming, items, batch))


async def _dry_run(
    rt: Runtime, adapter: Adapter, route: Route, incoming: Incoming, items: list[Item]
) -> Response:
    """A provider's dry run delivers nothing, so nothing is counted, held or
    recorded: it is judged as /v1/check judges, and when every recipient is
    allowed the provider validates it too, as the sender asked."""
    decisions = [await rt.gateway.check(item.message) for item in items]
    headers = [*gateway_headers(items, decisions), ("X-Gateway-Dry-Run", "true")]
    kept = [
        (i, d) for i, d in zip(items, decisions, strict=True) if d.decision is not Verdict.ALLOW
    ]
    if kept:  # the answer names the recipients that would not be sent now
        refused = _not_sent(adapter, incoming, [i for i, _ in kept], [d for _, d in kept])
        return respond(refused.with_headers(headers))
    try:
        reply = await rt.upstream(route).send(outbound(route, adapter, incoming, incoming.body))
    except UpstreamError as exc:
        status = 504 if isinstance(exc, UpstreamTimeout) else 502
        answer = adapter.error(status, f"the upstream gave no answer: {exc}")
        return respond(answer.with_headers(headers))
    return respond(Answer(reply.status, reply.headers, reply.body).with_headers(headers))


def render(adapter: Adapter, incoming: Incoming, items: Sequence[Item], batch: Batch) -> Answer:
    """The upstream's answer unchanged when it gave one; else the gateway's own."""
    decisions = batch.decisions
    headers = gateway_headers(items, decisions)
    if batch.reply is not None:
        reply = batch.reply
        return Answer(reply.status, reply.headers, reply.body).with_headers(headers)
    if batch.failure is not None:
        status = 504 if isinstance(batch.failure, UpstreamTimeout) else 502
        message = f"the upstream gave no answer: {batch.failure}"
        return adapter.error(status, message).with_headers(headers)
    return _not_sent(adapter, incoming, items, decisions).with_headers(headers)


def _not_sent(
    adapter: Adapter, incoming: Incoming, items: Sequence[Item], decisions: Sequence[Decision]
) -> Answer:
    """The answer when nothing goes out now: held, or refused (429 with
    Retry-After when every refusal is a cap)."""
    held = [d for d in decisions if d.decision is Verdict.DEFER]
    if held:
        return adapter.held(incoming, held)
    capped = all(d.capped_only and d.retry_at is not None for d in decisions)
    refused = adapter.refused(items, decisions, capped)
    return refused.with_headers([("Retry-After", str(_retry_after(decisions)))] if capped else [])


def gateway_headers(items: Sequence[Item], decisions: Sequence[Decision]) -> Headers:
    verdicts = {d.decision for d in decisions}
    summary = verdicts.pop().value if len(verdicts) == 1 else Verdict.PARTIAL.value
    headers = [
        ("X-Gateway-Decision", summary),
        ("X-Gateway-Decision-Id", ",".join(d.decision_id for d in decisions)),
    ]
    if summary == Verdict.PARTIAL.value:
        dropped = []
        for item, d in zip(items, decisions, strict=True):
            if d.decision is not Verdict.ALLOW and d.reasons:
                why = _why(d)
                dropped.append(
                    f"{d.decision_id};decision={d.decision.value};field={item.where}"
                    f";code={why.code.value};rule={why.rule}"
                )
        headers.append(("X-Gateway-Dropped", ", ".join(dropped)))
    return headers


def _why(decision: Decision) -> Reason:
    """The reason to name for a dropped recipient: for a refusal, the first
    that refuses rather than defers (reject beats defer)."""
    if decision.decision is Verdict.REJECT:
        deferring = {r.rule for r in decision.trace if r.action is Action.DEFER}
        for reason in decision.reasons:
            if reason.rule not in deferring:
                return reason
    return decision.reasons[0]


# The server writes these on every answer itself: the upstream's would make
# a second Date (a field that holds one value) and a second Server.
_SERVERS_OWN = frozenset({"content-length", "date", "server"})


def respond(answer: Answer) -> Response:
    response = Response(answer.body, answer.status)
    # Raw pairs: the upstream's repeated headers stay repeated, its bytes unchanged.
    response.raw_headers += [
        (k.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape"))
        for k, v in answer.headers
        if k.lower() not in _SERVERS_OWN
    ]
    return response


def _retry_after(decisions: Sequence[Decision]) -> int:
    waits = [(d.retry_at - d.at).total_seconds() for d in decisions if d.retry_at is not None]
    return max(1, math.ceil(max(waits, default=1)))


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    path: str = raw.decode("latin-1")
    return path + ("?" + query.decode("latin-1") if query else "")


def _fingerprint(incoming: Incoming, ctx: Context) -> str:
    digest = hashlib.sha256()
    for part in (incoming.method, incoming.path, ctx.category, ",".join(ctx.tags)):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update((ctx.timezone or "").encode("utf-8") + b"\0" + incoming.body)
    return digest.hexdigest()
