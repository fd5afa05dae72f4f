"""Each decision carries the trace id of the request that made it, joined to
the sender's own trace when it sends a W3C traceparent header."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests.web.conftest import Make, sms

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_senders_trace_is_joined(client: TestClient) -> None:
    answer = client.post("/v1/messages", json=sms(), headers={"traceparent": PARENT})
    assert answer.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    record = client.get(f"/v1/decisions/{answer.json()['decision_id']}").json()
    assert record["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_without_a_parent_each_request_starts_a_trace(client: TestClient) -> None:
    first = client.post("/v1/check", json=sms()).json()["trace_id"]
    second = client.post("/v1/check", json=sms()).json()["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


def test_tracing_can_be_switched_off(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_TRACING": "false"})
    answer = client.post("/v1/check", json=sms(), headers={"traceparent": PARENT})
    assert answer.json()["trace_id"] is None
