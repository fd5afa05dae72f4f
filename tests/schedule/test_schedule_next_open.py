"""next_open: the earliest instant every applicable window is open in every zone.

Expected instants are worked out by hand in the comments; the last test checks
the search against a minute-by-minute scan with is_open.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from gateway.schedule.window import Window, is_open, next_open
from gateway.schedule.zones import number_zones

NY = "America/New_York"
PARIS = "Europe/Paris"
Check = tuple[Window, Sequence[str], str | None]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def one(window: str | Window, zone: str, country: str | None = "US") -> list[Check]:
    parsed = Window.parse(window) if isinstance(window, str) else window
    return [(parsed, (zone,), country)]


def test_already_open_returns_the_instant_itself() -> None:
    instant = utc("2026-06-15T12:00:00.250000")  # 08:00:00.25 EDT
    assert next_open(one("08:00-21:00", NY), instant) == instant


def test_closed_at_the_end_opens_next_morning() -> None:
    # 21:00 EDT is 01:00Z; the next 08:00 EDT is 12:00Z the same UTC day.
    assert next_open(one("08:00-21:00", NY), utc("2026-06-16T01:00:00")) == utc(
        "2026-06-16T12:00:00"
    )


def test_several_ranges_open_at_the_next_range() -> None:
    # 12:30 CEST on a June Monday; the afternoon range starts at 14:00 CEST = 12:00Z.
    window = Window.parse(["08:00-12:00", "14:00-20:00"])
    assert next_open(one(window, PARIS, "FR"), utc("2026-06-15T10:30:00")) == utc(
        "2026-06-15T12:00:00"
    )


def test_crossing_range_opens_on_its_start_day() -> None:
    # Saturday 2026-06-20 06:00 EDT has just closed Friday's night; the next
    # Friday 22:00 EDT is 2026-06-26 22:00 = 2026-06-27 02:00Z.
    window = Window.parse("22:00-06:00", ["fri"])
    assert next_open(one(window, NY), utc("2026-06-20T10:00:00")) == utc("2026-06-27T02:00:00")


def test_new_york_spring_forward() -> None:
    # 2026-03-08 00:00 EST = 05:00Z. 02:30 does not exist that night; the first
    # existing instant inside 02:30-21:00 is 03:00 EDT = 07:00Z.
    assert next_open(one("02:30-21:00", NY), utc("2026-03-08T05:00:00")) == utc(
        "2026-03-08T07:00:00"
    )
    # A range wholly inside the gap waits for the next day: 02:00 EDT on 03-09 = 06:00Z.
    assert next_open(one("02:00-02:30", NY), utc("2026-03-08T05:00:00")) == utc(
        "2026-03-09T06:00:00"
    )
    # Asked at 21:00 EST on the 7th (02:00Z), 08:00 next morning is already EDT: 12:00Z.
    assert next_open(one("08:00-21:00", NY), utc("2026-03-08T02:00:00")) == utc(
        "2026-03-08T12:00:00"
    )


def test_new_york_fall_back() -> None:
    # 2026-11-01: 01:00-01:30 happens at 05:00-05:30Z (EDT) and again at 06:00-06:30Z (EST).
    window = Window.parse("01:00-01:30")
    assert next_open(one(window, NY), utc("2026-11-01T05:30:00")) == utc("2026-11-01T06:00:00")
    # After the second pass, the next is 01:00 EST on 11-02 = 06:00Z.
    assert next_open(one(window, NY), utc("2026-11-01T06:30:00")) == utc("2026-11-02T06:00:00")
    # Asked at 21:30 EDT on 10-31 (01:30Z), 08:00 next morning is EST: 13:00Z.
    assert next_open(one("08:00-21:00", NY), utc("2026-11-01T01:30:00")) == utc(
        "2026-11-01T13:00:00"
    )


def test_crossing_range_over_the_spring_gap() -> None:
    # Saturday 03-07 22:00 EST (03:00Z) to Sunday 06:00 EDT (10:00Z): seven real hours.
    window = Window.parse("22:00-06:00")
    assert is_open(window, utc("2026-03-08T09:59:59"), NY, "US")
    assert next_open(one(window, NY), utc("2026-03-08T10:00:00")) == utc("2026-03-09T02:00:00")


def test_paris_dst_days() -> None:
    # 2026-03-29 01:00 CET = 00:00Z; 02:15 is skipped, so 02:15-03:30 opens at 03:00 CEST = 01:00Z.
    assert next_open(one("02:15-03:30", PARIS, "FR"), utc("2026-03-29T00:00:00")) == utc(
        "2026-03-29T01:00:00"
    )
    # 2026-10-25: 02:00-02:30 is 00:00-00:30Z (CEST) and again 01:00-01:30Z (CET).
    assert next_open(one("02:00-02:30", PARIS, "FR"), utc("2026-10-25T00:45:00")) == utc(
        "2026-10-25T01:00:00"
    )


def test_france_marketing_waits_out_sunday_across_the_dst_change() -> None:
    # Saturday 2026-03-28 20:30 CET (19:30Z) is after hours; Sunday is closed; Monday
    # 08:00 is CEST by then (+2): 2026-03-30 06:00Z.
    window = Window.parse(
        "08:00-20:00", ["mon", "tue", "wed", "thu", "fri", "sat"], exclude_holidays=True
    )
    assert next_open(one(window, PARIS, "FR"), utc("2026-03-28T19:30:00")) == utc(
        "2026-03-30T06:00:00"
    )


def test_holidays() -> None:
    us = Window.parse("08:00-21:00", exclude_holidays=True)
    # Friday 07-03 (observed) and Saturday 07-04 are closed: Sunday 08:00 EDT = 12:00Z.
    assert next_open(one(us, NY), utc("2026-07-03T14:00:00")) == utc("2026-07-05T12:00:00")
    # With no known country the holidays cannot close the window.
    assert next_open(one(us, NY, None), utc("2026-07-03T14:00:00")) == utc("2026-07-03T14:00:00")
    # 14 July 2026 is a Tuesday: 10:00 CEST is closed, Wednesday 08:00 CEST = 06:00Z.
    fr = Window.parse("08:00-20:00", exclude_holidays=True)
    assert next_open(one(fr, PARIS, "FR"), utc("2026-07-14T08:00:00")) == utc("2026-07-15T06:00:00")


def test_crossing_range_starting_on_a_holiday_waits_a_day() -> None:
    # 22:30 CEST on 14 July (20:30Z): that night belongs to the holiday, so the
    # next is 15 July 22:00 CEST = 20:00Z.
    window = Window.parse("22:00-06:00", exclude_holidays=True)
    assert next_open(one(window, PARIS, "FR"), utc("2026-07-14T20:30:00")) == utc(
        "2026-07-15T20:00:00"
    )
    # The night before the holiday is an ordinary night: open at 03:00 CEST on the 14th.
    assert next_open(one(window, PARIS, "FR"), utc("2026-07-14T01:00:00")) == utc(
        "2026-07-14T01:00:00"
    )


TCPA = Window.parse("08:00-21:00")


def test_us_toll_free_common_window_is_90_minutes_in_summer() -> None:
    # 42 zones. In June the latest opening is Guam (UTC+10): 08:00 = 22:00Z the day
    # before; the earliest closing is St John's (NDT, UTC-2:30): 21:00 = 23:30Z.
    # Everything else (Pago Pago 08:00 = 19:00Z, Honolulu, Adak, Halifax 21:00 = 00:00Z)
    # lies around that, so the common window is 22:00Z-23:30Z.
    checks: list[Check] = [(TCPA, number_zones("+18005550100"), "US")]
    assert next_open(checks, utc("2026-06-15T12:00:00")) == utc("2026-06-15T22:00:00")
    assert next_open(checks, utc("2026-06-15T23:29:59")) == utc("2026-06-15T23:29:59")
    assert next_open(checks, utc("2026-06-15T23:30:00")) == utc("2026-06-16T22:00:00")
    # In January St John's is NST (UTC-3:30): 21:00 = 00:30Z, so 23:30Z is still open.
    assert next_open(checks, utc("2026-01-15T23:30:00")) == utc("2026-01-15T23:30:00")
    assert next_open(checks, utc("2026-01-16T00:30:00")) == utc("2026-01-16T22:00:00")


def test_russian_mobile() -> None:
    # 16 zones from Bucharest to Kamchatka/Anadyr (UTC+12): 21:00 there = 09:00Z.
    # January: Bucharest EET (UTC+2) opens at 06:00Z; July: EEST (UTC+3), 05:00Z.
    checks: list[Check] = [(TCPA, number_zones("+79165550100"), "RU")]
    assert next_open(checks, utc("2026-01-15T09:00:00")) == utc("2026-01-16T06:00:00")
    assert next_open(checks, utc("2026-07-15T09:00:00")) == utc("2026-07-16T05:00:00")


def test_australian_mobile() -> None:
    # Cocos (UTC+6:30) opens last at 01:30Z. The first to close is Sydney/Lord Howe at
    # UTC+11 in January (21:00 = 10:00Z) but Lord Howe at UTC+10:30 in July (10:30Z).
    checks: list[Check] = [(TCPA, number_zones("+61491570156"), "AU")]
    assert next_open(checks, utc("2026-01-15T10:15:00")) == utc("2026-01-16T01:30:00")
    assert next_open(checks, utc("2026-07-15T10:15:00")) == utc("2026-07-15T10:15:00")
    assert next_open(checks, utc("2026-07-15T10:30:00")) == utc("2026-07-16T01:30:00")


def test_idaho_area_code_across_spring_forward() -> None:
    # 2026-03-08 05:00Z is Saturday night in Boise (22:00 MST) and Los Angeles (21:00 PST).
    # By morning both are on DST: 08:00 MDT = 14:00Z, 08:00 PDT = 15:00Z; the later wins.
    checks: list[Check] = [(TCPA, number_zones("+12085550123"), "US")]
    assert next_open(checks, utc("2026-03-08T05:00:00")) == utc("2026-03-08T15:00:00")
    # In July the common window is 15:00Z (LA opens) to 03:00Z (Boise closes).
    assert next_open(checks, utc("2026-07-02T02:59:00")) == utc("2026-07-02T02:59:00")
    assert next_open(checks, utc("2026-07-02T03:00:00")) == utc("2026-07-02T15:00:00")


def test_several_checks_must_all_be_open() -> None:
    # 20:30 EDT on 07-01 (00:30Z on 07-02): TCPA is open but 08:00-20:00 is not; both
    # open at 08:00 EDT on 07-02 = 12:00Z.
    florida = Window.parse("08:00-20:00")
    checks: list[Check] = [(TCPA, (NY,), "US"), (florida, (NY,), "US")]
    assert next_open(checks, utc("2026-07-02T00:30:00")) == utc("2026-07-02T12:00:00")


def test_none_when_nothing_opens_within_the_horizon() -> None:
    # US toll-free in June with 09:00-20:00: Guam opens at 23:00Z, St John's closes
    # at 22:30Z; never both, on any of the next 14 days.
    toll_free = number_zones("+18005550100")
    narrow = Window.parse("09:00-20:00")
    assert next_open([(narrow, toll_free, "US")], utc("2026-06-15T12:00:00")) is None
    # Tokyo 08:00-09:00 is 23:00Z-00:00Z; New York's is 12:00Z-13:00Z in June.
    hour = Window.parse("08:00-09:00")
    checks: list[Check] = [(hour, ("Asia/Tokyo",), "JP"), (hour, (NY,), "US")]
    assert next_open(checks, utc("2026-06-15T12:00:00")) is None


def test_the_horizon_is_inclusive() -> None:
    # Monday 2026-06-15 21:00 EDT (01:00Z on the 16th); Wednesday 08:00 EDT is 12:00Z
    # on the 17th, exactly 1 day 11 hours later.
    window = Window.parse("08:00-21:00", ["wed"])
    instant = utc("2026-06-16T01:00:00")
    expected = utc("2026-06-17T12:00:00")
    assert next_open(one(window, NY), instant, timedelta(days=1, hours=11)) == expected
    assert next_open(one(window, NY), instant, timedelta(days=1, hours=10, minutes=59)) is None


def test_edge_cases() -> None:
    instant = utc("2026-06-15T03:00:00")
    assert next_open([], instant) == instant  # nothing restricts the send
    assert next_open([(TCPA, (), "US")], instant) is None  # unknown zones never open
    with pytest.raises(ValueError, match="must be timezone-aware"):
        next_open(one(TCPA, NY), datetime(2026, 6, 15, 3, 0))


SCAN_ZONES = [
    NY,
    PARIS,
    "Australia/Lord_Howe",  # half-hour DST
    "Australia/Eucla",  # UTC+8:45
    "America/St_Johns",
    "Pacific/Chatham",  # UTC+12:45 / +13:45
    "Asia/Kolkata",
    "Pacific/Pago_Pago",
]
SCAN_STARTS = [  # near the 2026 DST changes in the zones above, and ordinary days
    "2026-03-07T12:00:00",
    "2026-03-28T18:00:00",
    "2026-04-04T10:00:00",
    "2026-07-03T00:00:00",
    "2026-09-26T10:00:00",
    "2026-10-24T20:00:00",
    "2026-10-31T20:00:00",
    "2026-12-24T15:00:00",
]


def random_window(rng: random.Random) -> Window:
    def clock() -> str:
        return f"{rng.randrange(24):02d}:{rng.choice([0, 15, 30, 45]):02d}"

    ranges = []
    for _ in range(rng.randint(1, 2)):
        start, end = clock(), clock()
        ranges.append(f"{start}-{'24:00' if start == end else end}")
    days = rng.sample(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], rng.randint(1, 7))
    return Window.parse(ranges, days, exclude_holidays=rng.random() < 0.5)


def test_matches_a_minute_by_minute_scan() -> None:
    # Every window boundary falls on a whole UTC minute (offsets and transitions are
    # whole minutes), so scanning minutes finds the first opening exactly.
    rng = random.Random(20260308)
    horizon = timedelta(days=3)
    for _ in range(120):
        zones = rng.sample(SCAN_ZONES, rng.choice([1, 1, 2, 3]))
        country = rng.choice(["US", "FR", "AU", None])
        count = rng.choice([1, 1, 1, 2])
        checks: list[Check] = [(random_window(rng), zones, country) for _ in range(count)]
        start = utc(rng.choice(SCAN_STARTS)) + timedelta(minutes=rng.randrange(24 * 60))

        def all_open(t: datetime) -> bool:
            return all(is_open(w, t, z, c) for w, zs, c in checks for z in zs)  # noqa: B023

        expected = next(
            (
                start + timedelta(minutes=m)
                for m in range(int(horizon.total_seconds() // 60) + 1)
                if all_open(start + timedelta(minutes=m))
            ),
            None,
        )
        assert next_open(checks, start, horizon) == expected, (checks, start)
