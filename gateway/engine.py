"""Plan, fetch facts, decide. Pure: no I/O here; `now` and the facts come in.

plan(bundle, message, recipient)  -> Plan (which rules apply, what to ask the store)
precheck(plan, now)               -> results of the pure rules
may_count(results)                -> whether the store may count this send
decide(plan, now, results, facts) -> Outcome (verdict, reasons, trace, deliver_at)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from gateway.model import Action, Code, Message, Reason, Result, RuleResult, Verdict
from gateway.policy.bundle import Bundle
from gateway.rules import FrequencyCap, ListRule, PureRule, Rule, TextCache, TimeWindow
from gateway.schedule.window import next_open
from gateway.store.base import CapCheck, Facts, FactsRequest

HORIZON = timedelta(days=14)


# Where each rule's result comes from once the facts are in: a skipped rule's
# fixed result, the pure rules' results by id, or an opt-out (with the lists it
# names for this shape) or a cap judging the facts. Sorted out once per shape,
# so that `decide` does no type tests.
_SKIP, _PURE, _LISTS, _CAP = range(4)
_Step = tuple[int, Rule, Any]


@dataclass(frozen=True, slots=True)
class Shape:
    """What every message of one shape (channel, category, sender, route,
    country, tags, area code) shares: which rules apply and the opt-out lists
    they name. Worked out once per shape and bundle, since conditions and list
    names read nothing else."""

    rules: tuple[tuple[Rule, bool], ...]
    steps: tuple[_Step, ...]  # how `decide` gets each rule's result, in rule order
    content: tuple[PureRule, ...]  # applicable rules that read the texts alone
    timed: tuple[PureRule, ...]  # other applicable rules that need no stored facts
    caps: tuple[FrequencyCap, ...]  # the applicable frequency caps
    lists: tuple[tuple[str, bool], ...]  # (list name, enforced), for the store


@dataclass(frozen=True, slots=True)
class Plan:
    message: Message
    bundle: Bundle
    shape: Shape
    request: FactsRequest
    cap_slices: dict[str, slice]  # rule id -> its windows in request.caps

    @property
    def rules(self) -> tuple[tuple[Rule, bool], ...]:
        """Every rule with whether it applies."""
        return self.shape.rules


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reasons: list[Reason]
    trace: list[RuleResult]
    deliver_at: datetime | None
    retry_at: datetime | None


def plan(bundle: Bundle, message: Message, recipient: str) -> Plan:
    """Which rules apply, and the one store request that serves all of them."""
    shape = _shape(bundle, message)
    caps: list[CapCheck] = []
    slices: dict[str, slice] = {}
    for rule in shape.caps:
        start = len(caps)
        caps += rule.checks(message, recipient)
        slices[rule.id] = slice(start, len(caps))
    request = FactsRequest(recipient, shape.lists, tuple(caps))
    return Plan(message, bundle, shape, request, slices)


_MAX_SHAPES = 4096  # distinct shapes remembered per bundle (senders x categories x ...)


def _shape(bundle: Bundle, message: Message) -> Shape:
    memo: dict[object, Shape] = bundle.memo.setdefault("shapes", {})
    key = bundle.shape_key(message)
    shape = memo.get(key)
    if shape is None:
        if len(memo) >= _MAX_SHAPES:
            memo.clear()
        shape = memo[key] = _new_shape(bundle, message)
    return shape


def _new_shape(bundle: Bundle, message: Message) -> Shape:
    rules = tuple(bundle.rules_for(message))
    applying = [rule for rule, applies in rules if applies]
    names: dict[str, list[str]] = {}
    lists: list[tuple[str, bool]] = []
    for rule in applying:
        if isinstance(rule, ListRule):
            names[rule.id] = rule.list_names(message)
            lists += [(name, rule.blocks_when_listed()) for name in names[rule.id]]
    return Shape(
        rules=rules,
        steps=tuple(_step(rule, applies, names) for rule, applies in rules),
        content=tuple(r for r in applying if isinstance(r, PureRule) and r.reads_texts_only),
        timed=tuple(r for r in applying if isinstance(r, PureRule) and not r.reads_texts_only),
        caps=tuple(rule for rule in applying if isinstance(rule, FrequencyCap)),
        lists=tuple(lists),
    )


def _step(rule: Rule, applies: bool, names: dict[str, list[str]]) -> _Step:
    if not applies:
        return (_SKIP, rule, rule.skipped())
    if isinstance(rule, ListRule):
        return (_LISTS, rule, names[rule.id])
    if isinstance(rule, FrequencyCap):
        return (_CAP, rule, None)
    return (_PURE, rule, None)


def precheck(plan: Plan, now: datetime) -> dict[str, RuleResult]:
    """Results of the rules that need no stored facts, by rule id."""
    texts = TextCache(plan.message)
    results = _content_results(plan, texts, now)
    for rule in plan.shape.timed:
        results[rule.id] = rule.check(texts, now)
    return results


# A campaign sends one text to many recipients: the answers of the rules that
# read only the texts are remembered per text (and channel and rule set), for
# texts short enough that the memo stays small (at most ~2 MB per bundle).
_MAX_TEXTS = 512
_MAX_TEXT_CHARS = 4096


def _content_results(plan: Plan, texts: TextCache, now: datetime) -> dict[str, RuleResult]:
    rules = plan.shape.content
    message = plan.message
    parts = (message.body, message.subject or "", message.title or "")
    if sum(len(part) for part in parts) > _MAX_TEXT_CHARS:
        return {rule.id: rule.check(texts, now) for rule in rules}
    memo: dict[object, dict[str, RuleResult]] = plan.bundle.memo.setdefault("texts", {})
    key = (rules, message.channel, message.subject is None, message.title is None, *parts)
    seen = memo.get(key)
    if seen is None:
        if len(memo) >= _MAX_TEXTS:
            memo.clear()
        seen = memo[key] = {rule.id: rule.check(texts, now) for rule in rules}
    return dict(seen)


def may_count(results: dict[str, RuleResult]) -> bool:
    """A send may be counted only if no enforced pure rule stops it."""
    return not any(r.result is Result.FAIL for r in results.values())


def decide(plan: Plan, now: datetime, pure: dict[str, RuleResult], facts: Facts) -> Outcome:
    trace = _trace(plan, pure, facts)
    failures = [r for r in trace if r.result is Result.FAIL]
    reasons = [r.reason() for r in failures]
    if not failures:
        return Outcome(Verdict.ALLOW, [], trace, None, None)
    retry_at = _retry_at(failures)
    if any(r.action is not Action.DEFER for r in failures):
        return Outcome(Verdict.REJECT, reasons, trace, None, retry_at)
    deliver_at = _deliver_at(plan, now)
    if deliver_at is None:
        # Still one reason per failed rule: each says why it cannot wait either.
        never = f"no moment in the next {HORIZON.days} days is inside every window"
        reasons = [Reason(r.rule, r.code, f"{r.message}; {never}") for r in reasons]
        return Outcome(Verdict.REJECT, reasons, trace, None, None)
    return Outcome(Verdict.DEFER, reasons, trace, deliver_at, None)


def _trace(plan: Plan, pure: dict[str, RuleResult], facts: Facts) -> list[RuleResult]:
    """Every rule's result, in rule order."""
    trace: list[RuleResult] = []
    for kind, rule, value in plan.shape.steps:
        if kind == _SKIP:
            trace.append(value)
        elif kind == _PURE:
            trace.append(pure[rule.id])
        elif kind == _LISTS:
            trace.append(cast(ListRule, rule).judge(value, facts.opted_out))
        else:
            counts = facts.caps[plan.cap_slices[rule.id]]
            trace.append(cast(FrequencyCap, rule).judge(counts))
    return trace


def _retry_at(failures: list[RuleResult]) -> datetime | None:
    """When every enforced failure is a cap: the moment all of them have room."""
    if any(r.code is not Code.FREQUENCY_CAPPED for r in failures):
        return None
    return max((r.retry_at for r in failures if r.retry_at is not None), default=None)


def _deliver_at(plan: Plan, now: datetime) -> datetime | None:
    """The earliest instant at which every applicable enforced window is open."""
    checks = []
    country = plan.message.recipient.country
    for rule, applies in plan.rules:
        if applies and isinstance(rule, TimeWindow) and rule.enforced:
            zones = rule.zones(plan.message)
            if not zones or rule.window is None:
                return None
            checks.append((rule.window, zones, country))
    return next_open(checks, now, HORIZON)
