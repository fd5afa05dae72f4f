"""Windows judged through the native API: numbers with several zones, ranges
across midnight, both DST changes, public holidays, and `deliver_at` in each."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.schedule.zones import number_zones

from .conftest import Make, window_rule


def local(instant: str, zone: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))


def inside(at: datetime, start: int, end: int) -> bool:
    return start <= at.hour < end


def deferred_until(make_gateway: Make, rules: str, at: str, **fields: str) -> str:
    gw = make_gateway(rules)
    gw.at(at)
    answer = gw.send(**fields)
    assert answer.status_code == 202, answer.text
    deliver_at: str = answer.json()["deliver_at"]
    assert gw.fate(answer.json()["decision_id"])["deliver_at"] == deliver_at
    return deliver_at


@pytest.mark.parametrize(
    ("number", "zones", "at", "expected"),
    [
        # June: Guam (UTC+10) opens at 22:00Z, St John's (UTC-2:30) closes at 23:30Z.
        ("+18005550100", 42, "2026-06-02T15:00:00Z", "2026-06-02T22:00:00Z"),
        # Bucharest (+3) opens at 05:00Z, Anadyr (+12) closes at 09:00Z.
        ("+79161234567", 16, "2026-06-02T10:00:00Z", "2026-06-03T05:00:00Z"),
        # Cocos (+6:30) opens at 01:30Z, Lord Howe (+10:30) closes at 10:30Z.
        ("+61412345678", 8, "2026-06-02T12:00:00Z", "2026-06-03T01:30:00Z"),
        # Idaho's 208: Boise (-6) and Los Angeles (-7).
        ("+12085550100", 2, "2026-06-03T03:00:00Z", "2026-06-03T15:00:00Z"),
    ],
)
def test_a_number_with_several_zones_waits_until_all_are_open(
    make_gateway: Make, number: str, zones: int, at: str, expected: str
) -> None:
    assert len(number_zones(number)) == zones
    deliver_at = deferred_until(make_gateway, window_rule(), at, to=number)
    assert deliver_at == expected
    for zone in number_zones(number):
        assert inside(local(deliver_at, zone), 8, 21), zone
    before = datetime.fromisoformat(expected.replace("Z", "+00:00")) - timedelta(seconds=1)
    assert not all(inside(local(before.isoformat(), z), 8, 21) for z in number_zones(number))


def test_the_toll_free_common_window_is_ninety_minutes(make_gateway: Make) -> None:
    gw = make_gateway(window_rule())
    codes = []
    for minute in range(0, 24 * 60, 30):
        gw.clock.set(
            datetime.fromisoformat("2026-06-02T00:00:00+00:00") + timedelta(minutes=minute)
        )
        codes.append(
            gw.client.post(
                "/v1/check", json={"channel": "sms", "to": "+18005550100", "body": "x"}
            ).json()["decision"]
        )
    assert codes.count("allow") == 3  # 22:00Z, 22:30Z, 23:00Z


CROSSING = window_rule('{hours: "22:00-06:00", days: [fri]}')


@pytest.mark.parametrize(
    ("at", "status"),
    [
        ("2026-06-05T21:59:59-04:00", 202),  # Friday, before the range
        ("2026-06-05T22:00:00-04:00", 201),  # Friday 22:00 opens it
        ("2026-06-06T05:59:59-04:00", 201),  # Saturday's small hours belong to Friday
        ("2026-06-06T06:00:00-04:00", 202),
        ("2026-06-06T23:00:00-04:00", 202),  # Saturday night is not Friday's
    ],
)
def test_a_range_across_midnight_belongs_to_its_first_day(
    make_gateway: Make, at: str, status: int
) -> None:
    gw = make_gateway(CROSSING)
    gw.at(at)
    assert gw.send().status_code == status


def test_a_range_across_midnight_defers_to_its_next_start(make_gateway: Make) -> None:
    deliver_at = deferred_until(make_gateway, CROSSING, "2026-06-06T06:00:00-04:00")
    assert deliver_at == "2026-06-13T02:00:00Z"  # next Friday 22:00 in New York


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Spring forward (2026-03-08, 02:00 -> 03:00): 08:00 is 12:00Z that day.
        ("2026-03-08T06:30:00Z", "2026-03-08T12:00:00Z"),
        # Fall back (2026-11-01, 02:00 -> 01:00): 08:00 is 13:00Z that day.
        ("2026-11-01T05:30:00Z", "2026-11-01T13:00:00Z"),
    ],
)
def test_deliver_at_follows_the_dst_change(make_gateway: Make, at: str, expected: str) -> None:
    assert deferred_until(make_gateway, window_rule(), at) == expected


def test_a_range_starting_in_the_skipped_hour_opens_at_the_change(make_gateway: Make) -> None:
    rules = window_rule('{hours: "02:30-05:00"}')
    deliver_at = deferred_until(make_gateway, rules, "2026-03-08T06:00:00Z")  # 01:00 EST
    assert deliver_at == "2026-03-08T07:00:00Z"  # 03:00 EDT, the first instant that exists


def test_the_repeated_hour_is_open_on_both_passes(make_gateway: Make) -> None:
    gw = make_gateway(window_rule('{hours: "01:00-02:00"}'))
    for at in ("2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"):  # 01:30 EDT, then EST
        gw.at(at)
        assert gw.send().status_code == 201, at
    gw.at("2026-11-01T07:00:00Z")  # 02:00 EST
    assert gw.send().json()["deliver_at"] == "2026-11-02T06:00:00Z"


HOLIDAYS = window_rule('{hours: "08:00-20:00"}', exclude_holidays="true")


def test_a_public_holiday_is_closed_and_named(make_gateway: Make) -> None:
    gw = make_gateway(HOLIDAYS)
    gw.at("2026-07-14T10:00:00+02:00")  # Bastille Day, a Tuesday
    answer = gw.send(to="+33612345678")
    assert answer.status_code == 202
    assert answer.json()["deliver_at"] == "2026-07-15T06:00:00Z"
    [reason] = answer.json()["reasons"]
    assert reason["message"].endswith(
        "except public holidays: National Day is a public holiday there"
    )
    [window] = [t for t in answer.json()["trace"] if t["rule"] == "window"]
    assert window["detail"]["holiday"] == "National Day"
    gw.at("2026-07-14T10:00:00-04:00")  # not a US holiday
    assert gw.send().status_code == 201


def test_holidays_in_a_row_are_skipped(make_gateway: Make) -> None:
    # 2026-12-25 (Christmas) and 26 (St Stephen's Day) are both German holidays.
    rules = window_rule('{hours: "08:00-20:00"}', exclude_holidays="true")
    at = "2026-12-24T20:00:00+01:00"
    deliver_at = deferred_until(make_gateway, rules, at, to="+4915123456789")
    assert deliver_at == "2026-12-27T07:00:00Z"


def test_holidays_on_the_only_open_day_push_deliver_at_on(make_gateway: Make) -> None:
    rules = window_rule('{hours: "08:00-21:00", days: [mon]}', exclude_holidays="true")
    # Monday 2026-05-25 is Memorial Day: the next open Monday is 06-01.
    assert deferred_until(make_gateway, rules, "2026-05-18T21:00:00-04:00") == (
        "2026-06-01T12:00:00Z"
    )


# Fridays only, US holidays closed: 2026-12-25 and 2027-01-01 are both holidays.
FRIDAYS = window_rule('{hours: "08:00-21:00", days: [fri]}', exclude_holidays="true")


def test_deliver_at_exactly_fourteen_days_ahead_is_held(make_gateway: Make) -> None:
    deliver_at = deferred_until(make_gateway, FRIDAYS, "2026-12-25T08:00:00-05:00")
    assert deliver_at == "2027-01-08T13:00:00Z"


def test_deliver_at_beyond_fourteen_days_is_rejected(make_gateway: Make) -> None:
    gw = make_gateway(FRIDAYS)
    gw.at("2026-12-25T07:59:59-05:00")  # the next opening is 14 days and one second away
    answer = gw.send()
    assert answer.status_code == 403
    body = answer.json()
    assert body["deliver_at"] is None
    [reason] = body["reasons"]  # one failed rule, one reason
    assert (reason["rule"], reason["code"]) == ("window", "outside_time_window")
    assert reason["message"].endswith("; no moment in the next 14 days is inside every window")
    assert gw.client.get("/v1/deferred").json()["deferred"] == []
