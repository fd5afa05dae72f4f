"""Sends deferred messages when their window opens, re-checking at that moment.

Guarantees (every backend; several processes share one queue in shared mode):

- Claims are atomic leases in the store: a due message is claimed by one
  scheduler at a time. The lease (`lease_ms`) outlasts the longest send the
  upstream time-outs allow, and the claimed batch is sent concurrently.
- The message is decided again at send time (opt-outs, caps, windows, the
  bundle then in force) and that decision is recorded with `deferred_from`
  naming the first one; the deferred item's `result` names the second
  decision and the fate: sent (with the upstream's message id), rejected
  (with the reasons), failed (the upstream refused, was unreachable, or may
  have received it), or pending again under the same id when a window is
  closed once more.
- At most once toward the upstream. Right before the upstream is called the
  item is marked with the attempt's decision id. A claim that finds such a
  mark (its earlier holder died or lost its lease mid-send) does not send
  again: the item fails with `upstream_unknown`, naming that attempt. A
  process that dies between the mark and the request going out therefore
  loses that message (visible as failed/unknown, never silently), and one
  that dies (or whose store fails) after the upstream accepted it but before
  its fate is stored has it reported failed/unknown although it was sent. One
  that dies before the mark leaves nothing sent, and the message is sent once
  after the lease runs out.
- Store or trail down: nothing is sent; the lease runs out and the message is
  tried again. A time-out after the request went out is never retried.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from gateway import relay
from gateway.adapters.native import NativeMessage, to_message
from gateway.errors import GatewayError, InputError, StoreUnavailable
from gateway.model import Code, Decision, Message, Verdict, iso
from gateway.runtime import Runtime
from gateway.service import Sent, ms
from gateway.settings import Settings
from gateway.store.base import DeferredMessage, DeferStatus
from gateway.upstream.base import Outbound, Upstream

_tracer = trace.get_tracer("gateway")
log = logging.getLogger("gateway.scheduler")
BATCH = 50
ATTEMPT = "attempt"  # key in a claimed item's result: the decision cleared to send


class LeaseLost(StoreUnavailable):
    """This scheduler's lease ran out before the send: another one may hold it."""


class Unsendable(Exception):
    """A held message that can no longer be sent as it stands."""

    def __init__(self, status: DeferStatus, code: Code, message: str) -> None:
        self.status, self.code = status, code
        super().__init__(message)


def lease_ms(settings: Settings) -> int:
    """A lease long enough for the slowest send the upstream time-outs allow."""
    send = settings.upstream_connect_timeout + settings.upstream_read_timeout
    return int((60 + 2 * send) * 1000)


async def run_due(rt: Runtime, limit: int = BATCH) -> int:
    """Claim the messages due at the runtime clock's now and send them; returns
    how many were claimed. Raises StoreUnavailable when nothing could be claimed."""
    now_ms = ms(rt.clock.now())
    claimed = await rt.store.defer_claim_due(now_ms, limit, lease_ms(rt.settings))
    await asyncio.gather(*(_attempt(rt, item) for item in claimed))
    return len(claimed)


async def _attempt(rt: Runtime, item: DeferredMessage) -> None:
    # Its own trace: the send-time decision carries this trace id.
    with _tracer.start_as_current_span("deferred send", attributes={"gateway.deferred": item.id}):
        await _attempt_traced(rt, item)


async def _attempt_traced(rt: Runtime, item: DeferredMessage) -> None:
    try:
        await _deliver(rt, item)
    except GatewayError as exc:
        # Store or trail down: nothing went out; the lease runs out and it is tried again.
        log.warning("deferred %s not sent now: %s", item.id, exc)
    except Exception:
        log.exception("deferred %s: unexpected failure; its lease will run out", item.id)


async def _deliver(rt: Runtime, item: DeferredMessage) -> None:
    if ATTEMPT in item.result:
        await _interrupted(rt, item)
        return
    try:
        message, outbound, upstream = _outgoing(rt, item)
    except Unsendable as exc:
        reason = {"rule": "scheduler", "code": exc.code.value, "message": str(exc)}
        await rt.store.defer_finish(item.id, exc.status, {"reasons": [reason]})
        return

    async def mark(decision: Decision) -> None:
        await _mark_attempt(rt, item, decision)

    sent = await rt.gateway.submit(
        message,
        outbound,
        upstream,
        lambda: item.payload,
        hold=False,
        deferred_from=item.id,
        before_send=mark,
    )
    await _settle(rt, item, sent)


def _outgoing(rt: Runtime, item: DeferredMessage) -> tuple[Message, Outbound, Upstream]:
    """The message to re-check and the request to send, from the held payload."""
    if item.payload.get("kind", "native") != "native":
        return _dropin_outgoing(rt, item)
    route = rt.settings.route(str(item.payload.get("route")))
    if route is None:
        why = f"the route '{item.payload.get('route')}' is no longer configured"
        raise Unsendable(DeferStatus.FAILED, Code.UPSTREAM_ERROR, why)
    try:
        native = NativeMessage.model_validate(item.payload["message"])
        sender = rt.settings.senders.get(item.sender)
        category = (
            route.default_category or (sender.default_category if sender else None) or "marketing"
        )
        message = to_message(native, route=route.name, sender=item.sender, category=category)
    except (InputError, ValidationError) as exc:
        raise Unsendable(DeferStatus.REJECTED, Code.INVALID_RECIPIENT, str(exc)) from None
    # The request as the sender made it, byte for byte (held before it was
    # kept: the message as read, written out again).
    held = item.payload.get("body")
    body = (
        held.encode("utf-8")
        if isinstance(held, str)
        else native.model_dump_json(by_alias=True, exclude_none=True).encode()
    )
    url = "sandbox" if route.upstream == "sandbox" else route.upstream
    outbound = Outbound("POST", url, (("content-type", "application/json"),), body)
    return message, outbound, rt.upstream(route)


def _dropin_outgoing(rt: Runtime, item: DeferredMessage) -> tuple[Message, Outbound, Upstream]:
    """A held provider request (Twilio, SendGrid, FCM), read again by its adapter."""
    try:
        prepared = relay.prepare(rt.settings, item)
    except (InputError, KeyError, TypeError) as exc:
        raise Unsendable(DeferStatus.REJECTED, Code.INVALID_RECIPIENT, str(exc)) from None
    if prepared is None:
        why = f"the {item.payload.get('kind')} route '{item.payload.get('route')}' is gone"
        raise Unsendable(DeferStatus.FAILED, Code.UPSTREAM_ERROR, why)
    message, outbound, route = prepared
    return message, outbound, rt.upstream(route)


async def _mark_attempt(rt: Runtime, item: DeferredMessage, decision: Decision) -> None:
    """Make the attempt durable before the upstream may receive it, so that a
    later claim never sends it a second time."""
    if item.lease_until_ms is not None and ms(rt.clock.now()) >= item.lease_until_ms:
        raise LeaseLost(f"the lease on deferred message {item.id} ran out before it was sent")
    item.result = {ATTEMPT: decision.decision_id, "attempt_at": iso(rt.clock.now())}
    await rt.store.defer_put(item)


async def _interrupted(rt: Runtime, item: DeferredMessage) -> None:
    attempt = item.result[ATTEMPT]
    why = (
        f"an earlier attempt (decision {attempt}) was interrupted after it was cleared to "
        "send; it may have reached the upstream, so it is not sent again"
    )
    reason = {"rule": "scheduler", "code": Code.UPSTREAM_UNKNOWN.value, "message": why}
    result = {"decision_id": attempt, "decision": Verdict.ALLOW.value, "reasons": [reason]}
    await rt.store.defer_finish(item.id, DeferStatus.FAILED, result)


async def _settle(rt: Runtime, item: DeferredMessage, sent: Sent) -> None:
    """Record the fate of the send in the item: re-queued, rejected, sent or failed."""
    decision = sent.decision
    result: dict[str, Any] = {
        "decision_id": decision.decision_id,
        "decision": decision.decision.value,
    }
    if decision.decision is Verdict.DEFER and decision.deliver_at is not None:
        item.deliver_at_ms = ms(decision.deliver_at)
        item.status, item.lease_until_ms = DeferStatus.PENDING, None
        item.result = result | {"deliver_at": iso(decision.deliver_at.astimezone(UTC))}
        await rt.store.defer_put(item)
        return
    result["reasons"] = [r.to_json() for r in decision.reasons]
    status = _status(decision, sent)
    if sent.reply is not None:
        result["upstream_status"] = sent.reply.status
        result["message_id"] = sent.reply.message_id
    await rt.store.defer_finish(item.id, status, result)


def _status(decision: Decision, sent: Sent) -> DeferStatus:
    if decision.decision is Verdict.REJECT:
        return DeferStatus.REJECTED
    if sent.reply is not None and sent.reply.accepted:
        return DeferStatus.SENT
    return DeferStatus.FAILED


# A finished held message (sent, refused, failed, cancelled) stays readable
# at GET /v1/deferred/{id} this long after it was due, then is removed, so
# that the queue does not grow for ever; the trail keeps its decisions.
KEEP_FINISHED_MS = 30 * 86_400_000
PURGE_EVERY_S = 3600.0
PURGE_BATCH = 1000


async def purge_finished(rt: Runtime) -> int:
    """Remove the finished messages due more than KEEP_FINISHED_MS ago, a
    batch at a time; returns how many."""
    before_ms = ms(rt.clock.now()) - KEEP_FINISHED_MS
    removed = 0
    while True:
        batch = await rt.store.defer_purge(before_ms, PURGE_BATCH)
        removed += batch
        if batch < PURGE_BATCH:
            return removed
        await asyncio.sleep(0)  # let messages through between batches


async def loop(rt: Runtime, interval: float) -> None:
    """Run `run_due` for the process's life: again at once after a full batch,
    else after `interval` seconds; and `purge_finished` every PURGE_EVERY_S."""
    purged_at = float("-inf")
    while True:
        if asyncio.get_running_loop().time() - purged_at >= PURGE_EVERY_S:
            purged_at = asyncio.get_running_loop().time()
            try:
                if removed := await purge_finished(rt):
                    log.info("scheduler: removed %d finished held messages", removed)
            except GatewayError as exc:
                log.warning("scheduler: finished held messages not removed now: %s", exc)
        try:
            handled = await run_due(rt)
        except GatewayError as exc:
            log.warning("scheduler: %s", exc)
            handled = 0
        except Exception:
            log.exception("scheduler failed; trying again")
            handled = 0
        if handled < BATCH:
            await asyncio.sleep(interval)
