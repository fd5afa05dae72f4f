"""Which local time a window is judged in, step by step, as a sender sees it:
the message's own zone, else every zone of the number, else the rule's
fallback, else outside the window."""

from __future__ import annotations

from typing import Any

from .conftest import Gateway, Make, window_rule

# 02:00 UTC: 22:00 in New York, 04:00 in Paris, 11:00 in Tokyo.
AT = "2026-06-02T02:00:00+00:00"
MARKETING = "{category: marketing}"


def window_detail(answer: Any) -> dict[str, Any]:
    trace = answer.json()["trace"]
    detail: dict[str, Any] = next(r["detail"] for r in trace if r["rule"] == "window")
    return detail


def email(**fields: Any) -> dict[str, Any]:
    base = {"channel": "email", "to": "ann@example.com", "subject": "Hi", "body": "Sale"}
    return base | {"category": "marketing"} | fields


def test_the_message_zone_beats_the_number(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(match=MARKETING))
    gw.at(AT)
    answer = gw.send(recipient_timezone="Asia/Tokyo")
    assert answer.status_code == 201
    assert window_detail(answer) == {"zones": ["Asia/Tokyo"], "local": "11:00", "open": True}


def test_the_message_zone_can_close_what_the_number_opens(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(match=MARKETING))
    gw.at("2026-06-02T15:00:00+00:00")  # 11:00 New York, 00:00 Tokyo
    answer = gw.send(recipient_timezone="Asia/Tokyo")
    assert answer.status_code == 202
    assert answer.json()["deliver_at"] == "2026-06-02T23:00:00Z"


def test_without_a_zone_the_number_decides(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(match=MARKETING))
    gw.at(AT)
    answer = gw.send()
    assert answer.status_code == 202
    detail = window_detail(answer)
    assert detail["zones"] == ["America/New_York"] and detail["local"] == "22:00"
    assert answer.json()["deliver_at"] == "2026-06-02T12:00:00Z"


def test_every_zone_of_the_number_must_be_open(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(match=MARKETING))
    gw.at("2026-06-02T14:30:00+00:00")  # 08:30 in Boise, 07:30 in Los Angeles
    answer = gw.send(to="+12085550100")
    assert answer.status_code == 202
    detail = window_detail(answer)
    assert detail["zones"] == ["America/Boise", "America/Los_Angeles"]
    assert detail["local"] == {"America/Boise": "08:30", "America/Los_Angeles": "07:30"}
    assert answer.json()["reasons"][0]["message"] == (
        "07:30 America/Los_Angeles is outside 08:00-21:00"
    )
    assert answer.json()["deliver_at"] == "2026-06-02T15:00:00Z"


def test_an_address_without_a_number_zone_uses_the_fallback(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(match=MARKETING, fallback_timezone="Asia/Tokyo"))
    gw.at(AT)
    answer = gw.client.post("/v1/messages", json=email())
    assert answer.status_code == 201
    assert window_detail(answer)["zones"] == ["Asia/Tokyo"]


def test_a_number_without_a_zone_uses_the_fallback(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(match=MARKETING, fallback_timezone="Europe/Paris"))
    gw.at(AT)
    answer = gw.send(to="+80012345678")  # a valid international freephone number
    assert answer.status_code == 202
    assert window_detail(answer)["zones"] == ["Europe/Paris"]
    assert answer.json()["deliver_at"] == "2026-06-02T06:00:00Z"


def test_the_fallback_does_not_override_the_number(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(match=MARKETING, fallback_timezone="Asia/Tokyo"))
    gw.at(AT)
    answer = gw.send()
    assert answer.status_code == 202
    assert window_detail(answer)["zones"] == ["America/New_York"]


def test_an_unknown_zone_is_never_inside(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(allow='{hours: "00:00-24:00"}', match=MARKETING))
    gw.at(AT)
    answer = gw.client.post("/v1/messages", json=email())
    assert answer.status_code == 403  # nothing to wait for: held would mean held forever
    body = answer.json()
    assert body["decision"] == "reject" and body["deliver_at"] is None
    assert [r["code"] for r in body["reasons"]] == ["outside_time_window"]  # one failed rule
    assert "time zone is unknown" in body["reasons"][0]["message"]
    assert window_detail(answer)["zones"] == []
    assert gw.client.get("/v1/deferred").json()["deferred"] == []


def test_an_unknown_number_zone_is_never_inside(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(allow='{hours: "00:00-24:00"}', match=MARKETING))
    gw.at(AT)
    answer = gw.send(to="+80012345678")
    assert answer.status_code == 403
    assert answer.json()["reasons"][0]["code"] == "outside_time_window"


def test_a_zone_on_the_message_opens_an_unknown_address(make_gateway: Make) -> None:
    gw = make_gateway(window_rule(allow='{hours: "00:00-24:00"}', match=MARKETING))
    gw.at(AT)
    answer = gw.client.post("/v1/messages", json=email(recipient_timezone="Europe/Paris"))
    assert answer.status_code == 201
    assert window_detail(answer)["zones"] == ["Europe/Paris"]


def test_an_unknown_zone_name_is_refused(gw: Gateway) -> None:
    answer = gw.send(recipient_timezone="Mars/Olympus_Mons")
    assert answer.status_code == 400
    assert "recipient_timezone" in answer.json()["fields"]
