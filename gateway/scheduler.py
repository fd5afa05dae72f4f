"""Sends deferred messages when their window opens, re-checking at that moment.

Claims are leased in the store, so with several processes each message is
sent by exactly one; a process that dies mid-send leaves a lease that expires
and the message is tried again (its first attempt, if it reached the upstream,
is recorded: no blind duplicate unless the upstream never answered).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.adapters.native import NativeMessage, to_message
from gateway.errors import GatewayError
from gateway.model import Verdict
from gateway.runtime import Runtime
from gateway.service import ms
from gateway.store.base import DeferredMessage, DeferStatus
from gateway.upstream.base import Outbound

log = logging.getLogger("gateway.scheduler")
LEASE_MS = 60_000


async def run_due(rt: Runtime, limit: int = 100) -> int:
    """Send every due message once; returns how many were handled."""
    now_ms = ms(rt.clock.now())
    claimed = await rt.store.defer_claim_due(now_ms, limit, LEASE_MS)
    for item in claimed:
        try:
            await _deliver(rt, item)
        except GatewayError as exc:
            # Store or trail down: the lease expires and the message is tried again.
            log.warning("deferred %s not sent now: %s", item.id, exc)
    return len(claimed)


async def _deliver(rt: Runtime, item: DeferredMessage) -> None:
    native = NativeMessage.model_validate(item.payload["message"])
    route = rt.settings.route(item.payload["route"]) or rt.settings.native_route()
    if route is None:
        await rt.store.defer_finish(item.id, DeferStatus.FAILED, {"error": "route gone"})
        return
    message = to_message(
        native,
        route=route.name,
        sender=item.sender,
        category=native.category or route.default_category or "marketing",
    )
    body = native.model_dump_json(by_alias=True, exclude_none=True).encode()
    url = "sandbox" if route.upstream == "sandbox" else route.upstream
    outbound = Outbound("POST", url, (("content-type", "application/json"),), body)
    sent = await rt.gateway.submit(
        message, outbound, rt.upstream(route), item.payload, hold=False, deferred_from=item.id
    )
    decision = sent.decision
    result: dict[str, Any] = {
        "decision_id": decision.decision_id,
        "decision": decision.decision.value,
    }
    if decision.decision is Verdict.DEFER and decision.deliver_at is not None:
        item.deliver_at_ms, item.status = ms(decision.deliver_at), DeferStatus.PENDING
        item.result = result
        await rt.store.defer_put(item)
        return
    result["reasons"] = [r.to_json() for r in decision.reasons]
    if decision.decision is Verdict.REJECT:
        status = DeferStatus.REJECTED
    elif sent.reply is not None and sent.reply.accepted:
        status = DeferStatus.SENT
        result["message_id"] = sent.reply.message_id
    else:
        status = DeferStatus.FAILED
    await rt.store.defer_finish(item.id, status, result)


async def loop(rt: Runtime, interval: float) -> None:
    while True:
        try:
            handled = await run_due(rt)
        except GatewayError as exc:
            log.warning("scheduler: %s", exc)
            handled = 0
        except Exception:
            log.exception("scheduler failed; trying again")
            handled = 0
        if not handled:
            await asyncio.sleep(interval)
