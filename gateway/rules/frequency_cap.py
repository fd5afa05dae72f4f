"""frequency_cap: rolling windows, exact to the millisecond, counted only when sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from gateway.model import Code, Message, RuleResult, iso
from gateway.policy.schema import FrequencyCapRule
from gateway.rules.base import CompileContext, Rule
from gateway.store.base import CapCheck, CapCount


@dataclass(frozen=True, slots=True)
class CapLimit:
    count: int
    per_ms: int
    per: str  # as written, for messages


@dataclass(eq=False)
class FrequencyCap(Rule):
    type: ClassVar[str] = "frequency_cap"
    stateful: ClassVar[bool] = True
    limits: tuple[CapLimit, ...] = ()
    key: str = "recipient"
    # Passing results by the counts they saw: they depend on nothing else.
    _room: dict[tuple[int, ...], RuleResult] = field(default_factory=dict, repr=False)

    @classmethod
    def compile(cls, spec: FrequencyCapRule, ctx: CompileContext) -> FrequencyCap:
        limits = tuple(CapLimit(lim.count, lim.per_seconds * 1000, lim.per) for lim in spec.limits)
        return cls(**cls.base_args(spec), limits=limits, key=spec.key)

    def checks(self, message: Message, recipient: str) -> list[CapCheck]:
        """One check per window; every window of the rule shares one counter,
        and no two rules ever share a counter."""
        if self.key == "sender":
            subject, tag = f"sender:{message.sender}", f"sender:{message.sender}"
        elif self.key == "sender_recipient":
            subject, tag = f"{message.sender}:{recipient}", recipient
        else:
            subject, tag = recipient, recipient
        counter = f"cap:{self.id}:{subject}"
        return [CapCheck(counter, tag, lim.count, lim.per_ms, self.enforced) for lim in self.limits]

    def judge(self, counts: tuple[CapCount, ...]) -> RuleResult:
        seen = tuple(got.count for got in counts)
        room = self._room.get(seen)  # most sends find the same few counts
        if room is not None:
            return room
        windows: list[dict[str, Any]] = []
        full: list[tuple[CapLimit, CapCount]] = []
        for lim, got in zip(self.limits, counts, strict=True):
            windows.append({"count": got.count, "limit": lim.count, "per": lim.per})
            if got.count >= lim.count:
                full.append((lim, got))
        if not full:
            if len(self._room) >= 1024:
                self._room.clear()
            self._room[seen] = self.passed(windows[0] | {"windows": windows})
            return self._room[seen]
        # The window that frees up last is the one that sets retry_at: the
        # detail and the reason name that one.
        lim, got = max(full, key=lambda pair: pair[1].retry_at_ms or 0)
        retry_ms = got.retry_at_ms or 0
        retry_at = datetime.fromtimestamp(retry_ms / 1000, UTC)
        detail = {"count": got.count, "limit": lim.count, "per": lim.per}
        detail |= {"retry_at": iso(retry_at), "windows": windows}
        why = f"{got.count} sends already in the last {lim.per} (limit {lim.count})"
        return self.failed(Code.FREQUENCY_CAPPED, why, detail, retry_at)
