"""Send windows: parsing a policy's `allow:` block, and judging instants against it.

Semantics (product contract, section 6):

- Ranges are half-open in local wall-clock time: "08:00-21:00" allows 08:00:00
  up to but not including 21:00:00. "24:00" may end a range.
- A range whose start is after its end ("22:00-06:00") crosses midnight and
  belongs to the day it starts on: with `days: [fri]` it covers Friday 22:00 to
  Saturday 06:00.
- Local times that a DST change skips do not exist, so they are never open; a
  range that starts inside the gap opens at the first instant that exists inside
  it. Local times that a DST change repeats (the autumn "fold") are open on both
  passes when their wall-clock time is inside a range.
- `exclude_holidays` closes a range when the day it STARTS on is a public
  holiday of the calendar in use: a crossing range that starts the evening
  before a holiday stays open into the holiday's small hours, and one that
  starts on the holiday stays closed into the next morning.
- The calendar in use is `holiday_calendar` if set, else the recipient's
  country. When that country is unknown (None, or not in the holidays package)
  the holiday check cannot close the window: holidays only ever narrow a
  window, and an unknown recipient zone is already treated as closed upstream.
  National public holidays only, as the holidays package lists them (observed
  days included); regional and state holidays are not considered.

Every instant must be timezone-aware; a naive one raises ValueError.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import TypedDict, TypeVar
from zoneinfo import ZoneInfo

import holidays

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
MINUTES_PER_DAY = 24 * 60
SECONDS_PER_DAY = 24 * 60 * 60
DEFAULT_HORIZON = timedelta(days=14)

# ASCII digits only: `\d` alone also takes other scripts' digits (Arabic-Indic `٠٨:٠٠`).
_RANGE = re.compile(r"\s*([0-9]{2}:[0-9]{2})\s*-\s*([0-9]{2}:[0-9]{2})\s*")
_EXAMPLE = '"08:00-21:00"'


T = TypeVar("T")


class WindowError(ValueError):
    """A window definition a policy author must fix.

    `field` names where ("hours", "hours[1]", "days[2]", "holiday_calendar");
    `str(error)` is the message alone, quoting the offending value.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        self.others: list[WindowError] = []  # further problems of the same window
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Window:
    """A compiled send window. Build it with `Window.parse`."""

    ranges: tuple[tuple[int, int], ...]  # local minutes from midnight; start > end crosses midnight
    days: frozenset[int]  # 0=Monday .. 6=Sunday: the day a range starts on
    exclude_holidays: bool = False
    holiday_calendar: str | None = None  # a holidays country code overriding the recipient's

    @classmethod
    def parse(
        cls,
        hours: str | Sequence[str],
        days: Sequence[str] | None = None,
        *,
        exclude_holidays: bool = False,
        holiday_calendar: str | None = None,
    ) -> Window:
        """Parse `hours` ("08:00-21:00" or a list of such), `days` (mon..sun, default
        every day) and the holiday options; raise WindowError on the first
        problem, with the problems of the other parts in its `others`."""
        problems: list[WindowError] = []

        def part(parse: Callable[[], T]) -> T | None:
            try:
                return parse()
            except WindowError as exc:
                problems.append(exc)
                return None

        if isinstance(hours, str):
            found = [part(lambda: _parse_range("hours", hours))]
        elif not hours:
            problems.append(WindowError("hours", f"needs at least one range (e.g. {_EXAMPLE})"))
            found = []
        else:
            found = [
                part(functools.partial(_parse_range, f"hours[{i}]", text))
                for i, text in enumerate(hours)
            ]
        parsed_days = part(lambda: _parse_days(days))
        calendar = part(lambda: _parse_calendar(holiday_calendar, exclude_holidays))
        problems = [each for problem in problems for each in (problem, *problem.others)]
        if problems:
            problems[0].others = problems[1:]
            raise problems[0]
        assert parsed_days is not None
        return cls(
            ranges=tuple(r for r in found if r is not None),
            days=parsed_days,
            exclude_holidays=exclude_holidays,
            holiday_calendar=calendar,
        )

    def describe(self) -> str:
        """A short human form for messages: "08:00-21:00", "08:00-12:00, 14:00-20:00 mon-fri",
        "08:00-20:00 mon-sat except public holidays"."""
        text = ", ".join(f"{_hhmm(start)}-{_hhmm(end)}" for start, end in self.ranges)
        if self.days != ALL_DAYS:
            text += " " + _describe_days(self.days)
        if self.exclude_holidays:
            calendar = f" {self.holiday_calendar}" if self.holiday_calendar else ""
            text += f" except{calendar} public holidays"
        return text


# --- parsing -------------------------------------------------------------------------


def _parse_range(field: str, text: object) -> tuple[int, int]:
    if not isinstance(text, str) or not (found := _RANGE.fullmatch(text)):
        hint = ""
        if isinstance(text, str) and "," in text:
            hint = '; write several ranges as a list: ["08:00-12:00", "14:00-20:00"]'
        raise WindowError(field, f"{_quote(text)} is not HH:MM-HH:MM (e.g. {_EXAMPLE}){hint}")
    start, end = (_parse_clock(field, text, found.group(i)) for i in (1, 2))
    if start == MINUTES_PER_DAY:
        raise WindowError(field, f"{_quote(text)} cannot start at 24:00 (write 00:00)")
    if start == end:
        raise WindowError(
            field, f'{_quote(text)} is an empty range (for the whole day write "00:00-24:00")'
        )
    return start, end


def _parse_clock(field: str, text: str, clock: str) -> int:
    hour, minute = int(clock[:2]), int(clock[3:])
    if (hour < 24 and minute < 60) or clock == "24:00":
        return hour * 60 + minute
    raise WindowError(
        field,
        f"{_quote(text)}: '{clock}' is not a time of day (00:00 to 23:59, or 24:00 to end a range)",
    )


def _parse_days(days: Sequence[str] | None) -> frozenset[int]:
    if days is None:
        return ALL_DAYS
    if isinstance(days, str):  # a lone "mon" rather than [mon]
        days = [days]
    if not days:
        raise WindowError(
            "days", "is empty, so the window would never open (leave it out to allow every day)"
        )
    parsed = set()
    wrong: list[WindowError] = []
    for i, name in enumerate(days):
        key = name.strip().lower() if isinstance(name, str) else None
        if key not in DAY_NAMES:
            why = f"{_quote(name)} is not a day (use {', '.join(DAY_NAMES)})"
            wrong.append(WindowError(f"days[{i}]", why))
            continue
        parsed.add(DAY_NAMES.index(key))
    if wrong:
        wrong[0].others = wrong[1:]
        raise wrong[0]
    return frozenset(parsed)


def _parse_calendar(code: str | None, exclude_holidays: bool) -> str | None:
    if code is None:
        return None
    normalized = code.strip().upper()
    if normalized not in _supported_countries():
        raise WindowError(
            "holiday_calendar",
            f"{_quote(code)} is not a country the holidays package knows "
            "(use an ISO 3166 code like US or FR)",
        )
    if not exclude_holidays:
        raise WindowError(
            "holiday_calendar",
            f"{_quote(code)} has no effect unless exclude_holidays is true",
        )
    return normalized


def _quote(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _describe_days(days: frozenset[int]) -> str:
    """Runs of three or more consecutive days as "mon-fri", the rest listed."""
    parts: list[str] = []
    run: list[int] = []
    for day in [*sorted(days), None]:
        if day is not None and run and day == run[-1] + 1:
            run.append(day)
            continue
        if len(run) >= 3:
            parts.append(f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}")
        else:
            parts.extend(DAY_NAMES[d] for d in run)
        run = [day] if day is not None else []
    return ", ".join(parts)


# --- holidays ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _supported_countries() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries())


@lru_cache(maxsize=4096)
def _holiday_names(code: str, year: int) -> Mapping[date, str]:
    # English names whatever the process locale, so traces read the same everywhere.
    calendar = holidays.country_holidays(code, years=year, language="en_US")
    return MappingProxyType(dict(calendar.items()))


def _calendar_code(window: Window, country: str | None) -> str | None:
    """The holiday calendar that may close `window`, or None when none can."""
    if not window.exclude_holidays:
        return None
    code = window.holiday_calendar or (country.strip().upper() if country else None)
    return code if code in _supported_countries() else None


def _holiday(code: str | None, day: date) -> str | None:
    return None if code is None else _holiday_names(code, day.year).get(day)


def _day_allowed(window: Window, code: str | None, day: date) -> bool:
    """Whether ranges starting on `day` apply: the weekday is allowed and it is no holiday."""
    return day.weekday() in window.days and _holiday(code, day) is None


# --- one instant ---------------------------------------------------------------------


class ZoneState(TypedDict):
    """What a window looks like at one instant in one zone, for decision traces."""

    zone: str
    local: str  # "HH:MM" wall-clock time
    open: bool
    holiday: str | None  # the public holiday keeping the window closed, if that is why


def _local(instant: datetime, zone: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"instant {instant.isoformat()} must be timezone-aware")
    return instant.astimezone(_zone(zone))


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    # ZoneInfo keeps only a few zones strongly cached; a 42-zone number would
    # otherwise re-read its files from disk on every call.
    return ZoneInfo(name)


def _start_days(window: Window, local: datetime) -> list[date]:
    """The days whose ranges contain this wall-clock time, before days and holidays."""
    day, minute = local.date(), local.hour * 60 + local.minute
    starts: list[date] = []
    for start, end in window.ranges:
        if start < end:
            if start <= minute < end:
                starts.append(day)
        elif minute >= start:
            starts.append(day)
        elif minute < end:
            starts.append(day - timedelta(days=1))
    return starts


def local_time(instant: datetime, zone: str) -> str:
    """Wall-clock "HH:MM" of `instant` in `zone`."""
    return _local(instant, zone).strftime("%H:%M")


def is_open(window: Window, instant: datetime, zone: str, country: str | None) -> bool:
    """Whether `window` allows sending at `instant` to a recipient in `zone`.

    `country` (ISO 3166 alpha-2) picks the holiday calendar unless the window
    names its own; it matters only with `exclude_holidays`.
    """
    code = _calendar_code(window, country)
    starts = _start_days(window, _local(instant, zone))
    return any(_day_allowed(window, code, day) for day in starts)


def explain(window: Window, instant: datetime, zone: str, country: str | None) -> ZoneState:
    """`is_open` with its reasons: the local time, and the holiday that closed it, if any."""
    local = _local(instant, zone)
    code = _calendar_code(window, country)
    days = [day for day in _start_days(window, local) if day.weekday() in window.days]
    names = [_holiday(code, day) for day in days]
    is_open_now = any(name is None for name in names)
    holiday = None if is_open_now else next((name for name in names if name), None)
    return {"zone": zone, "local": local.strftime("%H:%M"), "open": is_open_now, "holiday": holiday}


# --- the next opening ----------------------------------------------------------------

Spans = list[tuple[int, int]]  # sorted, disjoint half-open [start, end) in POSIX seconds


def next_open(
    checks: Sequence[tuple[Window, Sequence[str], str | None]],
    instant: datetime,
    horizon: timedelta = DEFAULT_HORIZON,
) -> datetime | None:
    """The earliest instant t >= `instant` at which every window is open in every one of
    its zones, or None if there is none up to `instant + horizon` (inclusive).

    Each check is (window, zones, holiday country). A check with no zones never
    opens (an unknown zone is treated as closed), so the answer is then None; no
    checks at all means nothing restricts the send and the answer is `instant`.
    The result is `instant` itself (in UTC) when it is already open, else a UTC
    instant exact to the second (windows open on whole seconds).
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"instant {instant.isoformat()} must be timezone-aware")
    if horizon < timedelta(0):
        raise ValueError(f"horizon {horizon} must not be negative")
    start = instant.timestamp()
    limit = start + horizon.total_seconds()
    first_day, last_day = math.floor(start / SECONDS_PER_DAY), math.floor(limit / SECONDS_PER_DAY)
    allowed: Spans | None = None  # None: nothing restricts yet
    for window, zones, country in checks:
        if not zones:
            return None
        code = _calendar_code(window, country)
        for zone in sorted(set(zones)):
            spans = _open_spans(window, zone, code, first_day, last_day + 1)
            allowed = list(spans) if allowed is None else _intersect(allowed, spans)
            if not allowed:
                return None
    if allowed is None:
        return instant.astimezone(UTC)
    for span_start, span_end in allowed:
        if span_end > start:
            if span_start > limit:
                return None
            if span_start <= start:
                return instant.astimezone(UTC)
            return datetime.fromtimestamp(span_start, UTC)
    return None


@lru_cache(maxsize=8192)
def _open_spans(
    window: Window, zone: str, code: str | None, first_day: int, end_day: int
) -> tuple[tuple[int, int], ...]:
    """When `window` is open in `zone`, as UTC spans within UTC days [first_day, end_day).

    Between two offset changes local wall time is the instant plus a constant
    offset, so a wall-clock range maps to one span per offset segment it meets:
    a range in a skipped hour meets no segment (never open), a range in a
    repeated hour meets two (open on both passes), and a range starting in a
    gap is cut to start at the transition, its first existing instant.
    """
    spans: Spans = []
    for seg_start, seg_end, offset in _offset_segments(zone, first_day, end_day):
        for wall_start, wall_end in _wall_spans(window, code, first_day, end_day):
            low, high = max(wall_start - offset, seg_start), min(wall_end - offset, seg_end)
            if low < high:
                spans.append((low, high))
    return tuple(_merge(spans))


@lru_cache(maxsize=1024)
def _wall_spans(
    window: Window, code: str | None, first_day: int, end_day: int
) -> tuple[tuple[int, int], ...]:
    """The window's ranges as wall-clock spans, in "wall seconds" (local date and time
    read as if UTC), for every local date that can meet UTC days [first_day, end_day).
    They depend on the zone only through its holiday calendar, so zones share them."""
    spans: Spans = []
    # Offsets are under a day, so local dates one day either side cover the UTC days.
    for ordinal in range(_EPOCH + first_day - 1, _EPOCH + end_day + 1):
        if not _day_allowed(window, code, date.fromordinal(ordinal)):
            continue
        midnight = (ordinal - _EPOCH) * SECONDS_PER_DAY
        for start, end in window.ranges:
            crossing = SECONDS_PER_DAY if start > end else 0
            spans.append((midnight + start * 60, midnight + end * 60 + crossing))
    return tuple(_merge(spans))


_EPOCH = date(1970, 1, 1).toordinal()


def _offset_segments(zone: str, first_day: int, end_day: int) -> list[tuple[int, int, int]]:
    """(start, end, utc offset in seconds) pieces covering UTC days [first_day, end_day)."""
    changes: list[tuple[int, int]] = []
    for day in range(first_day, end_day):
        for at, offset in _day_offsets(zone, day):
            if not changes or changes[-1][1] != offset:
                changes.append((at, offset))
    ends = [at for at, _ in changes[1:]] + [end_day * SECONDS_PER_DAY]
    return [(at, end, offset) for (at, offset), end in zip(changes, ends, strict=True)]


# Offset changes are found by probing every few hours and bisecting to the second.
# Two changes within one probe interval would go unseen; tz rules (past and
# projected) keep changes weeks apart, so this is exact for real zones.
_PROBE = 6 * 60 * 60


@lru_cache(maxsize=65536)
def _day_offsets(zone: str, day: int) -> tuple[tuple[int, int], ...]:
    """(from, offset) for UTC day `day` (days since 1970-01-01): the offset at its
    start, then one pair for each change of offset inside it."""
    tz = _zone(zone)
    low, last = day * SECONDS_PER_DAY, (day + 1) * SECONDS_PER_DAY - 1
    pieces = [(low, _offset(tz, low))]
    while low < last:
        high = min(low + _PROBE, last)
        if _offset(tz, high) == pieces[-1][1]:
            low = high
            continue
        before, after = low, high  # offset(before) is the current one, offset(after) is not
        while after - before > 1:
            middle = (before + after) // 2
            if _offset(tz, middle) == pieces[-1][1]:
                before = middle
            else:
                after = middle
        pieces.append((after, _offset(tz, after)))
        low = after
    return tuple(pieces)


def _offset(tz: ZoneInfo, at: int) -> int:
    offset = datetime.fromtimestamp(at, tz).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return int(offset.total_seconds())


def _merge(spans: Iterable[tuple[int, int]]) -> Spans:
    merged: Spans = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _intersect(left: Sequence[tuple[int, int]], right: Sequence[tuple[int, int]]) -> Spans:
    out: Spans = []
    i = j = 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out
