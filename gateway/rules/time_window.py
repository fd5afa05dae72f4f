"""time_window: regulated send hours, judged in the recipient's local time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from gateway.model import Code, Message, RecipientKind, RuleResult, iso
from gateway.policy.schema import TimeWindowRule
from gateway.rules.base import CompileContext, PureRule, TextCache
from gateway.schedule.window import Window, explain, is_open, local_time, next_open
from gateway.schedule.zones import number_zones

HORIZON = timedelta(days=14)


@dataclass(eq=False)
class TimeWindow(PureRule):
    type: ClassVar[str] = "time_window"
    window: Window | None = None
    fallback_timezone: str | None = None
    _open_now: dict[tuple[tuple[str, ...], str | None, int], RuleResult] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def compile(cls, spec: TimeWindowRule, ctx: CompileContext) -> TimeWindow:
        # The schema has checked each part of the window (hours, days, calendar).
        window = Window.parse(
            spec.allow.hours,
            spec.allow.days,
            exclude_holidays=spec.exclude_holidays,
            holiday_calendar=spec.holiday_calendar,
        )
        return cls(**cls.base_args(spec), window=window, fallback_timezone=spec.fallback_timezone)

    def zones(self, message: Message) -> tuple[str, ...]:
        """Where the recipient may be: the message's zone, else every zone of the
        number, else the rule's fallback; empty when nothing is known."""
        if message.recipient_timezone:
            return (message.recipient_timezone,)
        if message.recipient.kind is RecipientKind.PHONE:
            zones = message.recipient.zones or number_zones(message.recipient.address)
            if zones:
                return zones
        return (self.fallback_timezone,) if self.fallback_timezone else ()

    def check(self, texts: TextCache, now: datetime) -> RuleResult:
        assert self.window is not None
        message = texts.message
        zones = self.zones(message)
        country = message.recipient.country
        if not zones:
            detail: dict[str, Any] = {"zones": [], "local": None, "open": False, "next_open": None}
            outside = self.window.describe()
            why = f"the recipient's time zone is unknown, so it is treated as outside {outside}"
            return self.failed(Code.OUTSIDE_TIME_WINDOW, why, detail)
        # Windows open and close on whole minutes, so within one minute the
        # answer for the same zones is the same: most messages reuse it.
        key = (zones, country, int(now.timestamp()) // 60)
        seen = self._open_now.get(key)
        if seen is not None:
            return seen
        local = [local_time(now, zone) for zone in zones]
        closed = [z for z in zones if not is_open(self.window, now, z, country)]
        detail = {
            "zones": list(zones),
            "local": local[0] if len(zones) == 1 else dict(zip(zones, local, strict=True)),
            "open": not closed,
        }
        if not closed:
            if len(self._open_now) > 4096:
                self._open_now.clear()
            self._open_now[key] = self.passed(detail)
            return self._open_now[key]
        detail["next_open"] = iso(next_open([(self.window, zones, country)], now, HORIZON))
        where = f"{local_time(now, closed[0])} {closed[0]}"
        why = f"{where} is outside {self.window.describe()}"
        # When a public holiday is what keeps it closed, say which: the hours
        # alone would read as open.
        holiday = explain(self.window, now, closed[0], country)["holiday"]
        if holiday is not None:
            detail["holiday"] = holiday
            why += f": {holiday} is a public holiday there"
        return self.failed(Code.OUTSIDE_TIME_WINDOW, why, detail)
