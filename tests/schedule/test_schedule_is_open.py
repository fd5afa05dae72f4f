"""is_open, local_time and explain: one instant, one zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.schedule.window import Window, explain, is_open, local_time

NY = "America/New_York"
PARIS = "Europe/Paris"
MON_SAT = ["mon", "tue", "wed", "thu", "fri", "sat"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def at(zone: str, *fields: int) -> datetime:
    """A wall-clock time in `zone` (year, month, day, hour, minute[, second])."""
    year, month, day, hour, minute, *rest = fields
    return datetime(year, month, day, hour, minute, rest[0] if rest else 0, tzinfo=ZoneInfo(zone))


TCPA = Window.parse("08:00-21:00")


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ((2026, 6, 15, 7, 59, 59), False),
        ((2026, 6, 15, 8, 0, 0), True),  # the start is inside
        ((2026, 6, 15, 20, 59, 59), True),
        ((2026, 6, 15, 21, 0, 0), False),  # the end is not
    ],
)
def test_half_open_edges(local: tuple[int, ...], expected: bool) -> None:
    assert is_open(TCPA, at(NY, *local), NY, "US") is expected


def test_the_same_instant_is_judged_in_each_zone() -> None:
    instant = utc("2026-06-15T12:30:00")  # 08:30 in New York, 05:30 in Los Angeles
    assert is_open(TCPA, instant, NY, "US")
    assert not is_open(TCPA, instant, "America/Los_Angeles", "US")
    assert local_time(instant, NY) == "08:30"
    assert local_time(instant, "America/Los_Angeles") == "05:30"


def test_several_ranges() -> None:
    window = Window.parse(["08:00-12:00", "14:00-20:00"])
    assert is_open(window, at(PARIS, 2026, 6, 15, 11, 59, 59), PARIS, "FR")
    assert not is_open(window, at(PARIS, 2026, 6, 15, 12, 0), PARIS, "FR")
    assert not is_open(window, at(PARIS, 2026, 6, 15, 13, 59, 59), PARIS, "FR")
    assert is_open(window, at(PARIS, 2026, 6, 15, 14, 0), PARIS, "FR")


def test_24_00_ends_at_the_next_midnight() -> None:
    window = Window.parse("20:00-24:00", ["mon"])
    assert is_open(window, at(NY, 2026, 6, 15, 23, 59, 59), NY, "US")  # Monday
    assert not is_open(window, at(NY, 2026, 6, 16, 0, 0), NY, "US")
    assert is_open(Window.parse("00:00-24:00"), at(NY, 2026, 6, 16, 0, 0), NY, "US")


def test_crossing_range_belongs_to_the_day_it_starts_on() -> None:
    friday_night = Window.parse("22:00-06:00", ["fri"])
    # 2026-06-19 is a Friday.
    assert not is_open(friday_night, at(NY, 2026, 6, 19, 3, 0), NY, "US")  # started Thursday
    assert not is_open(friday_night, at(NY, 2026, 6, 19, 21, 59, 59), NY, "US")
    assert is_open(friday_night, at(NY, 2026, 6, 19, 22, 0), NY, "US")
    assert is_open(friday_night, at(NY, 2026, 6, 20, 0, 0), NY, "US")  # Saturday, still Friday's
    assert is_open(friday_night, at(NY, 2026, 6, 20, 5, 59, 59), NY, "US")
    assert not is_open(friday_night, at(NY, 2026, 6, 20, 6, 0), NY, "US")
    assert not is_open(friday_night, at(NY, 2026, 6, 20, 22, 0), NY, "US")  # Saturday's own


def test_new_york_spring_forward_skips_02_xx() -> None:
    # 2026-03-08: 01:59:59 EST (06:59:59Z) is followed by 03:00 EDT (07:00Z).
    window = Window.parse("02:30-21:00")
    assert local_time(utc("2026-03-08T06:59:59"), NY) == "01:59"
    assert not is_open(window, utc("2026-03-08T06:59:59"), NY, "US")
    assert local_time(utc("2026-03-08T07:00:00"), NY) == "03:00"
    assert is_open(window, utc("2026-03-08T07:00:00"), NY, "US")
    # A range wholly inside the skipped hour is never open that day.
    skipped = Window.parse("02:00-02:30")
    assert not any(
        is_open(skipped, utc("2026-03-08T05:00:00") + timedelta(minutes=m), NY, "US")
        for m in range(24 * 60)
    )


def test_new_york_fall_back_repeats_01_xx() -> None:
    # 2026-11-01: 01:59:59 EDT (05:59:59Z) is followed by 01:00 EST (06:00Z).
    window = Window.parse("01:00-01:30")
    first, second = utc("2026-11-01T05:15:00"), utc("2026-11-01T06:15:00")
    assert local_time(first, NY) == local_time(second, NY) == "01:15"
    assert is_open(window, first, NY, "US")
    assert not is_open(window, utc("2026-11-01T05:30:00"), NY, "US")
    assert is_open(window, second, NY, "US")  # the same wall time, an hour later
    assert not is_open(window, utc("2026-11-01T06:30:00"), NY, "US")


def test_paris_dst_days() -> None:
    window = Window.parse("02:15-03:30")
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z.
    assert not is_open(window, utc("2026-03-29T00:59:59"), PARIS, "FR")  # 01:59:59 CET
    assert is_open(window, utc("2026-03-29T01:00:00"), PARIS, "FR")  # 03:00 CEST
    assert not is_open(window, utc("2026-03-29T01:30:00"), PARIS, "FR")  # 03:30 CEST
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z; 02:15 happens twice.
    assert is_open(window, utc("2026-10-25T00:15:00"), PARIS, "FR")  # 02:15 CEST
    assert is_open(window, utc("2026-10-25T01:15:00"), PARIS, "FR")  # 02:15 CET
    assert not is_open(window, utc("2026-10-25T02:30:00"), PARIS, "FR")  # 03:30 CET


US_HOLIDAYS = Window.parse("08:00-21:00", exclude_holidays=True)


def test_us_independence_day_and_its_observed_friday() -> None:
    # 2026-07-04 is a Saturday, so the holidays package also lists Friday 07-03 (observed).
    assert is_open(US_HOLIDAYS, at(NY, 2026, 7, 2, 18, 0), NY, "US")
    assert explain(US_HOLIDAYS, at(NY, 2026, 7, 3, 10, 0), NY, "US") == {
        "zone": NY,
        "local": "10:00",
        "open": False,
        "holiday": "Independence Day (observed)",
    }
    assert explain(US_HOLIDAYS, at(NY, 2026, 7, 4, 12, 0), NY, "US") == {
        "zone": NY,
        "local": "12:00",
        "open": False,
        "holiday": "Independence Day",
    }
    assert is_open(US_HOLIDAYS, at(NY, 2026, 7, 5, 8, 0), NY, "US")


def test_holidays_only_matter_when_excluded() -> None:
    assert is_open(TCPA, at(NY, 2026, 7, 4, 12, 0), NY, "US")
    assert explain(TCPA, at(NY, 2026, 7, 4, 12, 0), NY, "US")["holiday"] is None


@pytest.mark.parametrize("country", [None, "ZZ", "XK1"])
def test_an_unknown_country_cannot_close_the_window(country: str | None) -> None:
    assert is_open(US_HOLIDAYS, at(NY, 2026, 7, 4, 12, 0), NY, country)


def test_country_codes_are_case_insensitive() -> None:
    assert not is_open(US_HOLIDAYS, at(NY, 2026, 7, 4, 12, 0), NY, "us")


def test_holiday_calendar_overrides_the_recipient_country() -> None:
    french = Window.parse("08:00-21:00", exclude_holidays=True, holiday_calendar="FR")
    assert is_open(french, at(NY, 2026, 7, 4, 12, 0), NY, "US")
    assert not is_open(french, at(NY, 2026, 7, 14, 12, 0), NY, "US")


FRANCE_MARKETING = Window.parse("08:00-20:00", MON_SAT, exclude_holidays=True)


def test_france_14_juillet_and_sundays() -> None:
    assert is_open(FRANCE_MARKETING, at(PARIS, 2026, 7, 13, 10, 0), PARIS, "FR")  # Monday
    assert explain(FRANCE_MARKETING, at(PARIS, 2026, 7, 14, 10, 0), PARIS, "FR") == {
        "zone": PARIS,
        "local": "10:00",
        "open": False,
        "holiday": "National Day",
    }
    sunday = explain(FRANCE_MARKETING, at(PARIS, 2026, 7, 12, 10, 0), PARIS, "FR")
    assert (sunday["open"], sunday["holiday"]) == (False, None)  # closed, but not by a holiday


def test_crossing_range_takes_the_holiday_status_of_its_start_day() -> None:
    nights = Window.parse("22:00-06:00", exclude_holidays=True)
    # Started Monday 13 July (no holiday): still open at 03:00 on the 14th.
    assert explain(nights, at(PARIS, 2026, 7, 14, 3, 0), PARIS, "FR") == {
        "zone": PARIS,
        "local": "03:00",
        "open": True,
        "holiday": None,
    }
    # Started on the 14th: closed that evening and into the 15th's small hours.
    assert not is_open(nights, at(PARIS, 2026, 7, 14, 22, 30), PARIS, "FR")
    assert explain(nights, at(PARIS, 2026, 7, 15, 3, 0), PARIS, "FR") == {
        "zone": PARIS,
        "local": "03:00",
        "open": False,
        "holiday": "National Day",
    }
    assert is_open(nights, at(PARIS, 2026, 7, 15, 22, 0), PARIS, "FR")


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="must be timezone-aware"):
        is_open(TCPA, datetime(2026, 6, 15, 12, 0), NY, "US")
    with pytest.raises(ValueError, match="must be timezone-aware"):
        local_time(datetime(2026, 6, 15, 12, 0), NY)
