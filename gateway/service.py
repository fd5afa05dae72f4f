"""One message through the gateway: decide, record, forward or hold, record again.

The order is the guarantee: the store counts atomically with its check; the
decision is durable in the trail before anything goes upstream; the upstream's
answer is added afterwards; a refused or unsent message gives its count back.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import engine
from gateway.audit.base import AuditTrail
from gateway.clock import Clock
from gateway.errors import (
    AuditUnavailable,
    StoreUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.ids import new_id
from gateway.model import Code, Decision, Message, Reason, Verdict
from gateway.policy.bundle import Bundle
from gateway.recipients import Pseudonymizer, hint
from gateway.store.base import DeferredMessage, Facts, Store
from gateway.upstream.base import Outbound, Reply, Upstream


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(slots=True)
class Sent:
    """What came of a submitted message."""

    decision: Decision
    reply: Reply | None = None  # the upstream's answer, when it gave one
    failure: UpstreamError | None = None  # why there is no answer


class Gateway:
    def __init__(
        self,
        *,
        bundle: Callable[[], Bundle],
        store: Store,
        trail: AuditTrail,
        pseudonyms: Pseudonymizer,
        clock: Clock,
        store_bodies: bool = False,
        max_deferred: Callable[[str], int] = lambda sender: 10_000,
    ) -> None:
        self._bundle = bundle
        self.store = store
        self.trail = trail
        self.pseudonyms = pseudonyms
        self.clock = clock
        self._store_bodies = store_bodies
        self._max_deferred = max_deferred

    async def check(self, message: Message, at: datetime | None = None) -> Decision:
        """The decision at `at` (default now), without sending or counting anything."""
        now = at or self.clock.now()
        decision, _, _ = await self._decide(message, now, count=False)
        return decision

    async def submit(
        self,
        message: Message,
        outbound: Outbound,
        upstream: Upstream,
        payload: dict[str, Any],
        *,
        hold: bool = True,
        deferred_from: str | None = None,
    ) -> Sent:
        """Decide and act: forward when allowed, hold when deferred. `payload`
        is what a deferred send needs later; the scheduler passes `hold=False`
        (it keeps the message it already holds) and the id it was held under."""
        now = self.clock.now()
        decision, plan, facts = await self._decide(message, now, count=True)
        if deferred_from is not None:
            decision.extra["deferred_from"] = deferred_from
        if hold and decision.decision is Verdict.DEFER:
            await self._hold(decision, message, payload, now)
        try:
            await self._record(decision, message, now, plan, facts)
        except AuditUnavailable:
            if hold and decision.decision is Verdict.DEFER:
                await self.store.defer_cancel(decision.decision_id)
            raise
        if decision.decision is not Verdict.ALLOW:
            return Sent(decision)
        return await self._forward(decision, outbound, upstream, plan, facts)

    async def _decide(
        self, message: Message, now: datetime, *, count: bool
    ) -> tuple[Decision, engine.Plan, Facts]:
        bundle = self._bundle()
        recipient = self.pseudonyms.token(message.recipient.address)
        plan = engine.plan(bundle, message, recipient)
        pure = engine.precheck(plan, now)
        decision_id = new_id(ms(now))
        facts = await self.store.fetch(
            plan.request, ms(now), count=count and engine.may_count(pure), send_id=decision_id
        )
        outcome = engine.decide(plan, now, pure, facts)
        decision = Decision(
            decision_id=decision_id,
            decision=outcome.verdict,
            at=now,
            policy_version=bundle.version,
            route=message.route,
            sender=message.sender,
            channel=message.channel,
            category=message.category,
            recipient=recipient,
            recipient_hint=hint(message.recipient.address),
            reasons=outcome.reasons,
            trace=outcome.trace,
            deliver_at=outcome.deliver_at,
            retry_at=outcome.retry_at,
        )
        return decision, plan, facts

    async def _hold(
        self, decision: Decision, message: Message, payload: dict[str, Any], now: datetime
    ) -> None:
        limit = self._max_deferred(message.sender)
        if await self.store.defer_pending_count(message.sender) >= limit:
            decision.decision = Verdict.REJECT
            decision.reasons.append(
                Reason(
                    "deferred-limit",
                    Code.OUTSIDE_TIME_WINDOW,
                    f"sender '{message.sender}' already holds {limit} deferred messages",
                )
            )
            decision.deliver_at = None
            return
        assert decision.deliver_at is not None
        await self.store.defer_put(
            DeferredMessage(
                id=decision.decision_id,
                sender=message.sender,
                route=message.route,
                recipient=decision.recipient,
                deliver_at_ms=ms(decision.deliver_at),
                created_at_ms=ms(now),
                payload=payload,
            )
        )

    async def _record(
        self, decision: Decision, message: Message, now: datetime, plan: engine.Plan, facts: Facts
    ) -> None:
        """Durable before anything is sent; if it cannot be written, nothing is sent."""
        record = decision.to_json() | {"content": self._content(message)}
        try:
            await self.trail.append(record, ms(now))
        except AuditUnavailable:
            if facts.counted:
                await self.store.refund(plan.request, decision.decision_id)
            raise

    def _content(self, message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("body", "subject", "title"):
            text = message.text(name)
            if text is None:
                continue
            data = text.encode("utf-8")
            out[name] = (
                {"text": text, "length": len(text)}
                if self._store_bodies
                else {"sha256": hashlib.sha256(data).hexdigest(), "length": len(text)}
            )
        return out

    async def _forward(
        self,
        decision: Decision,
        outbound: Outbound,
        upstream: Upstream,
        plan: engine.Plan,
        facts: Facts,
    ) -> Sent:
        try:
            reply = await upstream.send(outbound)
        except UpstreamError as exc:
            return await self._upstream_failed(decision, exc, plan, facts)
        decision.upstream = {
            "status": reply.status,
            "latency_ms": round(reply.latency_ms, 3),
            "message_id": reply.message_id,
        }
        if not reply.accepted:
            if facts.counted:
                await self.store.refund(plan.request, decision.decision_id)
            decision.reasons.append(
                Reason("upstream", Code.UPSTREAM_ERROR, f"the upstream answered {reply.status}")
            )
        await self._amend(decision)
        return Sent(decision, reply)

    async def _upstream_failed(
        self, decision: Decision, exc: UpstreamError, plan: engine.Plan, facts: Facts
    ) -> Sent:
        if isinstance(exc, UpstreamTimeout):
            code = Code.UPSTREAM_UNKNOWN  # it may have been delivered: the count stays
        else:
            code = Code.UPSTREAM_ERROR
            if facts.counted:
                await self.store.refund(plan.request, decision.decision_id)
        decision.upstream = {"status": None, "error": str(exc)}
        decision.reasons.append(Reason("upstream", code, str(exc)))
        await self._amend(decision)
        return Sent(decision, None, exc)

    async def _amend(self, decision: Decision) -> None:
        changes = {
            "upstream": decision.upstream,
            "reasons": [r.to_json() for r in decision.reasons],
        }
        # The decision itself is already durable; at worst the upstream's answer is lost.
        with contextlib.suppress(AuditUnavailable):
            await self.trail.update(decision.decision_id, changes)

    async def record_store_failure(self, message: Message, error: StoreUnavailable) -> str | None:
        """Best effort: leave a trace of a message refused because the store was down."""
        now = self.clock.now()
        decision = Decision(
            decision_id=new_id(ms(now)),
            decision=Verdict.REJECT,
            at=now,
            policy_version=self._bundle().version,
            route=message.route,
            sender=message.sender,
            channel=message.channel,
            category=message.category,
            recipient=self.pseudonyms.token(message.recipient.address),
            recipient_hint=hint(message.recipient.address),
            reasons=[Reason("store", Code.STORE_UNAVAILABLE, str(error))],
            trace=[],
        )
        try:
            await self.trail.append(decision.to_json(), ms(now))
        except AuditUnavailable:
            return None
        return decision.decision_id
