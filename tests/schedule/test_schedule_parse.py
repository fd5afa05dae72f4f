"""Window.parse: what a policy author may write, and what they are told when it is wrong."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.schedule.window import ALL_DAYS, Window, WindowError


def test_single_range_defaults_to_every_day() -> None:
    window = Window.parse("08:00-21:00")
    assert window == Window(ranges=((480, 1260),), days=ALL_DAYS)


def test_several_ranges_days_and_holidays() -> None:
    window = Window.parse(
        ["08:00-12:00", "14:00-20:00"],
        ["Mon", " tue ", "wed", "thu", "fri"],
        exclude_holidays=True,
        holiday_calendar="fr",
    )
    assert window.ranges == ((480, 720), (840, 1200))
    assert window.days == frozenset({0, 1, 2, 3, 4})
    assert window.exclude_holidays is True
    assert window.holiday_calendar == "FR"


def test_24_00_ends_a_range_and_crossing_ranges_are_kept_as_written() -> None:
    assert Window.parse("20:00-24:00").ranges == ((1200, 1440),)
    assert Window.parse("00:00-24:00").ranges == ((0, 1440),)
    assert Window.parse("22:00-06:00").ranges == ((1320, 360),)
    assert Window.parse(" 08:00 - 21:00 ").ranges == ((480, 1260),)


@pytest.mark.parametrize(
    ("hours", "field", "message"),
    [
        ("8:00-21:00", "hours", "'8:00-21:00' is not HH:MM-HH:MM (e.g. \"08:00-21:00\")"),
        ("08:00", "hours", "'08:00' is not HH:MM-HH:MM (e.g. \"08:00-21:00\")"),
        (
            "08:00-12:00, 14:00-20:00",
            "hours",
            "'08:00-12:00, 14:00-20:00' is not HH:MM-HH:MM (e.g. \"08:00-21:00\"); "
            'write several ranges as a list: ["08:00-12:00", "14:00-20:00"]',
        ),
        (
            "08:00-25:00",
            "hours",
            "'08:00-25:00': '25:00' is not a time of day (00:00 to 23:59, or 24:00 to end a range)",
        ),
        (
            "08:60-21:00",
            "hours",
            "'08:60-21:00': '08:60' is not a time of day (00:00 to 23:59, or 24:00 to end a range)",
        ),
        ("24:00-06:00", "hours", "'24:00-06:00' cannot start at 24:00 (write 00:00)"),
        (
            "21:00-21:00",
            "hours",
            "'21:00-21:00' is an empty range (for the whole day write \"00:00-24:00\")",
        ),
        (
            ["08:00-12:00", "14:00"],
            "hours[1]",
            "'14:00' is not HH:MM-HH:MM (e.g. \"08:00-21:00\")",
        ),
        ([], "hours", 'needs at least one range (e.g. "08:00-21:00")'),
        (
            "٠٨:00-21:00",  # Arabic-Indic digits, which int() would read as 08
            "hours",
            "'٠٨:00-21:00' is not HH:MM-HH:MM (e.g. \"08:00-21:00\")",
        ),
    ],
)
def test_bad_hours(hours: str | Sequence[str], field: str, message: str) -> None:
    with pytest.raises(WindowError) as caught:
        Window.parse(hours)
    assert (caught.value.field, str(caught.value)) == (field, message)


@pytest.mark.parametrize(
    ("days", "field", "message"),
    [
        (
            ["mon", "monday"],
            "days[1]",
            "'monday' is not a day (use mon, tue, wed, thu, fri, sat, sun)",
        ),
        ([], "days", "is empty, so the window would never open (leave it out to allow every day)"),
    ],
)
def test_bad_days(days: Sequence[str], field: str, message: str) -> None:
    with pytest.raises(WindowError) as caught:
        Window.parse("08:00-21:00", days)
    assert (caught.value.field, str(caught.value)) == (field, message)


def test_unknown_holiday_calendar() -> None:
    with pytest.raises(WindowError) as caught:
        Window.parse("08:00-21:00", exclude_holidays=True, holiday_calendar="XX")
    assert caught.value.field == "holiday_calendar"
    assert str(caught.value) == (
        "'XX' is not a country the holidays package knows (use an ISO 3166 code like US or FR)"
    )


def test_holiday_calendar_without_exclude_holidays_is_a_mistake() -> None:
    with pytest.raises(WindowError) as caught:
        Window.parse("08:00-21:00", holiday_calendar="FR")
    assert caught.value.field == "holiday_calendar"
    assert str(caught.value) == "'FR' has no effect unless exclude_holidays is true"


@pytest.mark.parametrize(
    ("window", "text"),
    [
        (Window.parse("08:00-21:00"), "08:00-21:00"),
        (Window.parse("22:00-24:00"), "22:00-24:00"),
        (
            Window.parse(["08:00-12:00", "14:00-20:00"], ["mon", "tue", "wed", "thu", "fri"]),
            "08:00-12:00, 14:00-20:00 mon-fri",
        ),
        (Window.parse("09:00-17:00", ["sun", "sat"]), "09:00-17:00 sat, sun"),
        (Window.parse("09:00-17:00", ["mon", "wed", "fri"]), "09:00-17:00 mon, wed, fri"),
        (Window.parse("09:00-17:00", ["fri", "sat", "sun", "mon"]), "09:00-17:00 mon, fri-sun"),
        (
            Window.parse(
                "08:00-20:00", ["mon", "tue", "wed", "thu", "fri", "sat"], exclude_holidays=True
            ),
            "08:00-20:00 mon-sat except public holidays",
        ),
        (
            Window.parse("08:00-20:00", exclude_holidays=True, holiday_calendar="FR"),
            "08:00-20:00 except FR public holidays",
        ),
    ],
)
def test_describe(window: Window, text: str) -> None:
    assert window.describe() == text
