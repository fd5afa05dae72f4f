"""`POST /v1/check` with "at" answers what a live send answers at that moment,
and a scheduler round with the store down sends nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.errors import StoreUnavailable
from tests.conftest import REPO
from tests.server import free_port

from .conftest import NIGHT_RULE, Make, sms

# The night rule's bundle, plus a French window closed on Sundays and holidays.
RULES = (
    NIGHT_RULE
    + """
  - id: fr-holidays
    type: time_window
    match: {channel: sms, country: FR}
    allow: {hours: "08:00-20:00", days: [mon, tue, wed, thu, fri, sat]}
    exclude_holidays: true
    action: defer
"""
)

MOMENTS = [
    ("2026-06-02T07:59:59-04:00", {}),
    ("2026-06-02T08:00:00-04:00", {}),
    ("2026-06-02T21:00:00-04:00", {}),
    ("2026-03-08T06:30:00Z", {}),  # spring forward
    ("2026-11-01T05:30:00Z", {}),  # fall back
    ("2026-06-02T15:00:00Z", {"to": "+18005550100"}),  # 42 zones
    ("2026-06-02T14:30:00Z", {"to": "+12085550100"}),  # 2 zones
    ("2026-07-14T10:00:00+02:00", {"to": "+33612345678"}),  # a holiday
    ("2026-06-02T02:00:00Z", {"recipient_timezone": "Asia/Tokyo"}),
    ("2026-06-02T12:00:00-04:00", {"to": "+12125550199"}),  # opted out
]

COMPARED = ("decision", "reasons", "deliver_at", "trace", "policy_version", "at")


@pytest.mark.parametrize(("at", "fields"), MOMENTS)
def test_check_at_a_moment_answers_as_a_live_send(
    make_gateway: Make, at: str, fields: dict[str, Any]
) -> None:
    gw = make_gateway(RULES)
    gw.client.put("/v1/opt-outs/global/+12125550199")
    gw.at("2026-01-01T00:00:00Z")  # the check's own clock is elsewhere
    checked = gw.client.post("/v1/check", json=sms(**fields) | {"at": at}).json()
    gw.at(at)
    live = gw.send(**fields).json()
    assert {k: checked[k] for k in COMPARED} == {k: live[k] for k in COMPARED}
    instant = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)
    assert live["at"] == f"{instant:%Y-%m-%dT%H:%M:%S}Z"  # both judged at that moment


def test_check_sees_the_caps_a_live_send_would(make_gateway: Make) -> None:
    gw = make_gateway(RULES)
    gw.at("2026-06-02T12:00:00-04:00")
    assert [gw.send().status_code for _ in range(2)] == [201, 201]
    checked = gw.client.post("/v1/check", json=sms(at="2026-06-02T13:00:00-04:00")).json()
    gw.at("2026-06-02T13:00:00-04:00")
    live = gw.send().json()
    assert checked["decision"] == live["decision"] == "reject"
    assert checked["reasons"] == live["reasons"]


def test_with_the_store_down_a_round_sends_nothing(make_gateway: Make) -> None:
    gw = make_gateway(
        env={
            "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "GATEWAY_AUDIT_KEY": "a-key-for-the-tests-only",
        }
    )
    with pytest.raises(StoreUnavailable):
        gw.run_due()
    gw.at("2026-06-02T22:00:00-04:00")
    assert gw.send().status_code == 503  # fail closed: not held, not sent
    assert gw.client.get("/v1/sandbox/messages").json()["messages"] == []


def test_the_gateway_check_command_answers_as_live_sends(make_gateway: Make) -> None:
    """`gateway check` (the command, on empty state) with "at" on each line."""
    moments = [(at, fields) for at, fields in MOMENTS if fields.get("to") != "+12125550199"]
    folder = make_gateway(RULES).rules.parent
    lines = "".join(json.dumps(sms(**fields) | {"at": at}) + "\n" for at, fields in moments)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--policies", str(folder), "-"],
        input=lines,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(moments), done.stderr
    for (at, fields), checked in zip(moments, answers, strict=True):
        gw = make_gateway(RULES)
        gw.at(at)
        live = gw.send(**fields).json()
        assert {k: checked[k] for k in COMPARED} == {k: live[k] for k in COMPARED}, at
