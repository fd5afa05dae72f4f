"""One message through the gateway: decide, record, forward or hold, record again.

The order is the guarantee: the store counts atomically with its check; the
decision is durable in the trail before anything goes upstream; the upstream's
answer is added afterwards; a refused or unsent message gives its count back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
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
from gateway.metrics import Metrics
from gateway.model import Code, Decision, Message, Reason, Verdict
from gateway.policy.bundle import Bundle
from gateway.recipients import Pseudonymizer, hint
from gateway.store.base import DeferredMessage, Facts, Store
from gateway.telemetry import current_trace_id
from gateway.upstream.base import Outbound, Reply, Upstream

log = logging.getLogger(__name__)
TEXTS = b"message texts"  # what the texts' digest key is derived for


def trace_id() -> str | None:
    """The request's trace id as 32 hex digits (None outside a trace), so
    a decision and the trace of the request that made it find each other."""
    current = current_trace_id()
    return format(current, "032x") if current else None


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(slots=True)
class Sent:
    """What came of a submitted message."""

    decision: Decision
    reply: Reply | None = None  # the upstream's answer, when it gave one
    failure: UpstreamError | None = None  # why there is no answer


@dataclass(slots=True)
class Batch:
    """What came of the messages of one provider request, in request order."""

    decisions: list[Decision]
    sent: list[int]  # the ones that went out, in the one upstream request
    reply: Reply | None = None
    failure: UpstreamError | None = None


# Given the allowed messages, the one request that carries them, and those it
# could not carry mapped to the refused message that took them along.
BuildForward = Callable[[list[int]], tuple[Outbound, dict[int, int]]]


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
        metrics: Metrics | None = None,
    ) -> None:
        self._bundle = bundle
        self.metrics = metrics or Metrics()
        self.store = store
        self.trail = trail
        self.pseudonyms = pseudonyms
        self.clock = clock
        self._store_bodies = store_bodies
        self._texts_key: bytes | None = None  # derived once the pseudonymization key is known
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
        payload: Callable[[], dict[str, Any]],
        *,
        hold: bool = True,
        deferred_from: str | None = None,
        before_send: Callable[[Decision], Awaitable[None]] | None = None,
    ) -> Sent:
        """Decide and act: forward when allowed, hold when deferred. `payload()`
        is what a deferred send needs later (asked only then: most messages are
        never held); the scheduler passes `hold=False`
        (it keeps the message it already holds), the id it was held under, and
        `before_send`, awaited after the decision is recorded and right before
        the upstream is called: if it raises, nothing is sent and the count is
        given back (best effort)."""
        now = self.clock.now()
        decision, plan, facts = await self._decide(message, now, count=True)
        if deferred_from is not None:
            decision.extra["deferred_from"] = deferred_from
        holding = hold and decision.decision is Verdict.DEFER
        if holding:
            await self._room(decision, message)  # a full queue refuses: before the record
            holding = decision.decision is Verdict.DEFER
        # The decision is durable before its message is held: a process that
        # dies in between leaves a decision whose message was never held (and
        # whose sender had no answer), never a held message with no decision,
        # which the scheduler would send later all the same.
        await self._record(decision, message, now, plan, facts)
        if holding:
            held = self._held(decision, message, payload(), now)
            try:
                await self.store.defer_put(held)
            except StoreUnavailable as exc:
                # The hold may still land (a write that timed out): the 503
                # says nothing will be sent, so it is withdrawn (best effort),
                # unless a scheduler has it already: then it is held after all.
                withdrawn = True
                if not exc.unsent:
                    with contextlib.suppress(StoreUnavailable):
                        withdrawn = await self.store.defer_withdraw(held)
                if withdrawn:
                    self._not_held(decision, exc)
                    raise
        self.metrics.decided(decision)
        if decision.decision is not Verdict.ALLOW:
            return Sent(decision)
        if before_send is not None:
            await self._before_send(before_send, decision, plan, facts)
        return await self._forward(decision, outbound, upstream, plan, facts)

    async def submit_many(
        self,
        messages: list[Message],
        build: BuildForward,
        payload: Callable[[int], dict[str, Any]],
        upstream: Upstream,
    ) -> Batch:
        """Decide every message (one per recipient of one request) on its own,
        hold the deferred ones (`payload(i)` is what message i needs later),
        and forward the allowed ones in the one request `build` makes. Every
        decision is durable before that request goes out. Recipients it could
        not carry, and every sent one when the upstream refuses or is never
        reached, give their count back."""
        now = self.clock.now()
        decided: list[tuple[Decision, engine.Plan, Facts]] = []
        held: list[DeferredMessage] = []
        try:
            for message in messages:
                decided.append(await self._decide(message, now, count=True))
            for i, (decision, _, _) in enumerate(decided):
                if decision.decision is Verdict.DEFER:
                    await self._room(decision, messages[i])
            outbound, sent = await self._carry(decided, build)
            for (decision, _, _), message in zip(decided, messages, strict=True):
                record = decision.to_json() | {"content": self._content(message)}
                await self.trail.append(record, ms(now))
        except (StoreUnavailable, AuditUnavailable):
            await self._undo(decided, held)
            raise
        # Held only once every decision is durable (as `submit` holds): a
        # process that dies before leaves no held message without a decision.
        try:
            await self._put_many(decided, messages, payload, now, held)
        except StoreUnavailable as exc:
            await self._undo(decided, held)
            for decision, _, _ in decided:  # nothing goes out: each record says so
                if decision.decision is not Verdict.REJECT:
                    self._not_held(decision, exc, "not sent")
            exc.decision_id = ",".join(d.decision_id for d, _, _ in decided)
            raise
        for decision, _, _ in decided:
            self.metrics.decided(decision)
        batch = Batch([d for d, _, _ in decided], sent)
        if outbound is not None and sent:
            await self._forward_many(batch, decided, outbound, upstream)
        return batch

    async def _put_many(
        self,
        decided: list[tuple[Decision, engine.Plan, Facts]],
        messages: list[Message],
        payload: Callable[[int], dict[str, Any]],
        now: datetime,
        held: list[DeferredMessage],
    ) -> None:
        for i, (decision, _, _) in enumerate(decided):
            if decision.decision is Verdict.DEFER:
                message = self._held(decision, messages[i], payload(i), now)
                held.append(message)  # withdrawn on failure, landed or not
                await self.store.defer_put(message)

    async def _carry(
        self, decided: list[tuple[Decision, engine.Plan, Facts]], build: BuildForward
    ) -> tuple[Outbound | None, list[int]]:
        """The request for the allowed messages; those it cannot carry are refused."""
        allowed = [i for i, (d, _, _) in enumerate(decided) if d.decision is Verdict.ALLOW]
        if not allowed:
            return None, []
        outbound, dropped = build(allowed)
        for i, cause in dropped.items():
            decision, plan, facts = decided[i]
            if facts.counted:
                await self.store.refund(plan.request, decision.decision_id)
            code = decided[cause][0].reasons[0].code if decided[cause][0].reasons else None
            decision.decision = Verdict.REJECT
            decision.reasons.append(
                Reason(
                    "carried-with",
                    code or Code.OUTSIDE_TIME_WINDOW,
                    f"cannot go without {decided[cause][0].recipient_hint} "
                    f"(decision {decided[cause][0].decision_id}), which was not sent",
                )
            )
        return outbound, [i for i in allowed if i not in dropped]

    async def _undo(
        self, decided: list[tuple[Decision, engine.Plan, Facts]], held: list[DeferredMessage]
    ) -> None:
        """Nothing went out: give every count back and release every hold (best effort)."""
        for decision, plan, facts in decided:
            if facts.counted and decision.decision is Verdict.ALLOW:
                with contextlib.suppress(StoreUnavailable):
                    await self.store.refund(plan.request, decision.decision_id)
        for message in held:
            with contextlib.suppress(StoreUnavailable):
                await self.store.defer_withdraw(message)

    async def _forward_many(
        self,
        batch: Batch,
        decided: list[tuple[Decision, engine.Plan, Facts]],
        outbound: Outbound,
        upstream: Upstream,
    ) -> None:
        try:
            batch.reply = await upstream.send(outbound)
        except UpstreamError as exc:
            batch.failure = exc
        for i in batch.sent:
            decision, plan, facts = decided[i]
            if batch.reply is not None:
                await self._answered(decision, batch.reply, plan, facts)
            else:
                assert batch.failure is not None
                await self._upstream_failed(decision, batch.failure, plan, facts)

    async def _before_send(
        self,
        hook: Callable[[Decision], Awaitable[None]],
        decision: Decision,
        plan: engine.Plan,
        facts: Facts,
    ) -> None:
        try:
            await hook(decision)
        except StoreUnavailable as exc:
            if facts.counted:
                with contextlib.suppress(StoreUnavailable):
                    await self.store.refund(plan.request, decision.decision_id)
            decision.reasons.append(Reason("store", Code.STORE_UNAVAILABLE, str(exc)))
            self._amend(decision)
            raise

    async def _decide(
        self, message: Message, now: datetime, *, count: bool
    ) -> tuple[Decision, engine.Plan, Facts]:
        bundle = self._bundle()
        recipient = self.pseudonyms.token(message.recipient.address)
        plan = engine.plan(bundle, message, recipient)
        pure = engine.precheck(plan, now)
        decision_id = new_id(ms(now))
        counting = count and engine.may_count(pure)
        try:
            facts = await self.store.fetch(
                plan.request, ms(now), count=counting, send_id=decision_id
            )
        except StoreUnavailable as exc:
            if counting and not exc.unsent:
                # A count that timed out may have been made (or be made yet, by
                # a stalled server): nothing is sent, so it is given back. Best
                # effort: a refund that overtakes its count finds nothing to undo.
                with contextlib.suppress(StoreUnavailable):
                    await self.store.refund(plan.request, decision_id)
            raise
        outcome = engine.decide(plan, now, pure, facts)
        if facts.counted and outcome.verdict is not Verdict.ALLOW:
            # Counted, then refused on what the store does not judge (no consent):
            # the count is given back, as for any message that is not sent.
            await self.store.refund(plan.request, decision_id)
            facts = dataclasses.replace(facts, counted=False)
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
            trace_id=trace_id(),
        )
        return decision, plan, facts

    async def _room(self, decision: Decision, message: Message) -> None:
        """Refuse a deferred decision when its sender already holds max_deferred."""
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

    def _not_held(
        self, decision: Decision, error: StoreUnavailable, what: str = "not held"
    ) -> None:
        """A recorded deferred decision whose hold failed: the 503 says nothing
        will be sent, so the decision becomes that refusal (an amendment of
        its record), and the error names it, so that no second record is made."""
        decision.decision = Verdict.REJECT
        decision.deliver_at = None
        decision.reasons.append(Reason("store", Code.STORE_UNAVAILABLE, f"{what}: {error}"))
        reasons = [r.to_json() for r in decision.reasons]
        changes = {"decision": Verdict.REJECT.value, "deliver_at": None, "reasons": reasons}
        self.trail.amend(decision.decision_id, changes)
        error.decision_id, error.decision = decision.decision_id, decision.to_json()

    def _held(
        self, decision: Decision, message: Message, payload: dict[str, Any], now: datetime
    ) -> DeferredMessage:
        """The deferred message a decision to defer holds."""
        assert decision.deliver_at is not None
        return DeferredMessage(
            id=decision.decision_id,
            sender=message.sender,
            route=message.route,
            recipient=decision.recipient,
            deliver_at_ms=ms(decision.deliver_at),
            created_at_ms=ms(now),
            payload=payload,
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
            if self._store_bodies:
                out[name] = {"text": text, "length": len(text)}
                continue
            # Keyed: a plain hash of "Your code is 482913" gives the code back
            # to anyone who tries the million candidates.
            digest = hmac.new(self._text_key(), text.encode("utf-8"), hashlib.sha256)
            out[name] = {"hmac_sha256": digest.hexdigest(), "length": len(text)}
        return out

    def _text_key(self) -> bytes:
        """The key of the texts' digests, derived from the pseudonymization key."""
        if self._texts_key is None:
            self._texts_key = self.pseudonyms.derived(TEXTS)
        return self._texts_key

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
        await self._answered(decision, reply, plan, facts)
        return Sent(decision, reply)

    async def _answered(
        self, decision: Decision, reply: Reply, plan: engine.Plan, facts: Facts
    ) -> None:
        decision.upstream = {
            "status": reply.status,
            "latency_ms": round(reply.latency_ms, 3),
            "message_id": reply.message_id,
        }
        self.metrics.answered(decision.route, reply.status, reply.latency_ms)
        if not reply.accepted:
            if facts.counted:
                await self._refund_after_send(plan, decision)
            decision.reasons.append(
                Reason("upstream", Code.UPSTREAM_ERROR, f"the upstream answered {reply.status}")
            )
        self._amend(decision)

    async def _upstream_failed(
        self, decision: Decision, exc: UpstreamError, plan: engine.Plan, facts: Facts
    ) -> Sent:
        if isinstance(exc, UpstreamTimeout):
            code = Code.UPSTREAM_UNKNOWN  # it may have been delivered: the count stays
        else:
            code = Code.UPSTREAM_ERROR
            if facts.counted:
                await self._refund_after_send(plan, decision)
        decision.upstream = {"status": None, "error": str(exc)}
        self.metrics.answered(decision.route, None, None)
        decision.reasons.append(Reason("upstream", code, str(exc)))
        self._amend(decision)
        return Sent(decision, None, exc)

    async def _refund_after_send(self, plan: engine.Plan, decision: Decision) -> None:
        """Give back the count of a message the upstream refused or never got.
        Once the upstream has been called its answer is the sender's, so a
        store that fails now leaves the count in place (the stricter error)
        rather than turning the answer into a 503."""
        try:
            await self.store.refund(plan.request, decision.decision_id)
        except StoreUnavailable as exc:
            log.warning("decision %s: its count was not given back: %s", decision.decision_id, exc)

    def _amend(self, decision: Decision) -> None:
        changes = {
            "upstream": decision.upstream,
            "reasons": [r.to_json() for r in decision.reasons],
        }
        # Not awaited: the decision itself is already durable, and at worst a
        # crash in the next moment loses the upstream's answer.
        self.trail.amend(decision.decision_id, changes)

    async def refuse_unparsed(
        self, head: dict[str, Any], reason: Reason, *, record: bool, at: datetime | None = None
    ) -> Decision:
        """A refusal of a message that could not become a `Message` (its
        recipient is not a valid address): `head` holds the route, sender,
        channel, category and the address as given. Recorded like any decision
        when `record` (a send, not a check): durable before the answer. `at`:
        the moment a check asks about (default now)."""
        now = at or self.clock.now()
        address = head["address"]
        if record:
            # The trail keeps recipients pseudonymized: a recorded reason names
            # the address by its hint, as the decision does (the answer quotes it).
            shown = f"'{hint(address)}'"
            told = reason.message.replace(f"'{address}'", shown)
            reason = Reason(reason.rule, reason.code, told.replace(f"'{address[:80]}'", shown))
        decision = Decision(
            decision_id=new_id(ms(now)),
            decision=Verdict.REJECT,
            at=now,
            policy_version=self._bundle().version,
            route=head["route"],
            sender=head["sender"],
            channel=head["channel"],
            category=head["category"],
            recipient=self.pseudonyms.token(address),
            recipient_hint=hint(address),
            reasons=[reason],
            trace=[],
            trace_id=trace_id(),
        )
        if record:
            await self.trail.append(decision.to_json(), ms(now))
            self.metrics.decided(decision)
        return decision

    def unavailable(self, message: Message, error: Exception) -> Decision:
        """The refusal of a message because the store or the trail is down."""
        now = self.clock.now()
        part = "store" if isinstance(error, StoreUnavailable) else "trail"
        return Decision(
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
            reasons=[Reason(part, Code.STORE_UNAVAILABLE, str(error))],
            trace=[],
            trace_id=trace_id(),
        )

    async def record_refusal(self, decision: Decision) -> bool:
        """Best effort: leave a trace of a refusal; False if the trail is down too."""
        try:
            await self.trail.append(decision.to_json(), ms(decision.at))
        except AuditUnavailable:
            return False
        return True

    async def record_store_failure(self, message: Message, error: StoreUnavailable) -> str | None:
        """Best effort: the id of the recorded refusal of a message the store could not judge."""
        decision = self.unavailable(message, error)
        return decision.decision_id if await self.record_refusal(decision) else None
