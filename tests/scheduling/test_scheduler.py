"""The scheduler, one round at a time at a fixed clock: a held message is sent
once at its deliver_at, re-checked at that moment, and its fate is told."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway import scheduler
from gateway.store.base import DeferStatus
from tests.stub_upstream import stub_upstream

from .conftest import Gateway, Make, window_rule

NIGHT = "2026-06-02T22:00:00-04:00"
MORNING = "2026-06-03T08:00:00-04:00"


def hold(gw: Gateway, **fields: Any) -> str:
    gw.at(NIGHT)
    answer = gw.send(**fields)
    assert answer.status_code == 202, answer.text
    assert answer.json()["deliver_at"] == "2026-06-03T12:00:00Z"
    item_id: str = answer.json()["decision_id"]
    return item_id


def sandbox(gw: Gateway) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = gw.client.get("/v1/sandbox/messages").json()["messages"]
    return messages


def test_sent_once_at_deliver_at_with_both_decisions_linked(gw: Gateway) -> None:
    item_id = hold(gw, body="Held sale")
    gw.at("2026-06-03T07:59:59-04:00")
    assert gw.run_due() == 0
    assert gw.fate(item_id)["status"] == "pending"
    gw.at(MORNING)
    assert gw.run_due() == 1
    assert gw.run_due() == 0
    assert len(sandbox(gw)) == 1
    fate = gw.fate(item_id)
    assert fate["status"] == "sent"
    assert fate["result"]["decision"] == "allow" and fate["result"]["upstream_status"] == 201
    assert fate["result"]["message_id"]
    second = gw.client.get(f"/v1/decisions/{fate['result']['decision_id']}").json()
    assert second["deferred_from"] == item_id
    assert second["at"] == "2026-06-03T12:00:00Z" and second["decision"] == "allow"
    assert second["upstream"]["status"] == 201
    assert gw.client.get(f"/v1/decisions/{item_id}").json()["decision"] == "defer"


def test_an_opt_out_while_held_stops_the_send(gw: Gateway) -> None:
    item_id = hold(gw)
    assert gw.client.put("/v1/opt-outs/global/+12125550100").status_code == 201
    gw.at(MORNING)
    assert gw.run_due() == 1
    fate = gw.fate(item_id)
    assert fate["status"] == "rejected"
    assert [r["code"] for r in fate["result"]["reasons"]] == ["opted_out"]
    assert sandbox(gw) == []
    record = gw.client.get(f"/v1/decisions/{fate['result']['decision_id']}").json()
    assert record["decision"] == "reject" and record["deferred_from"] == item_id


def test_caps_are_counted_at_send_time(gw: Gateway) -> None:
    item_id = hold(gw)
    gw.at(MORNING)
    assert [gw.send().status_code for _ in range(2)] == [201, 201]
    assert gw.run_due() == 1
    fate = gw.fate(item_id)
    assert fate["status"] == "rejected"
    assert fate["result"]["reasons"][0]["code"] == "frequency_capped"
    assert len(sandbox(gw)) == 2


def test_a_cancelled_message_is_not_sent(gw: Gateway) -> None:
    item_id = hold(gw)
    assert gw.client.delete(f"/v1/deferred/{item_id}").json()["status"] == "cancelled"
    gw.at(MORNING)
    assert gw.run_due() == 0
    assert gw.fate(item_id)["status"] == "cancelled"
    assert sandbox(gw) == []
    assert gw.client.delete(f"/v1/deferred/{item_id}").status_code == 409


def test_finished_messages_are_removed_a_month_after_they_were_due(gw: Gateway) -> None:
    """The queue keeps a finished message for GET /v1/deferred/{id} for 30
    days after it was due, then removes it; pending ones stay, and the
    trail keeps every decision."""
    sent, cancelled = hold(gw), hold(gw, to="+12125550101")
    gw.client.delete(f"/v1/deferred/{cancelled}")
    gw.at(MORNING)
    assert gw.run_due() == 1
    gw.at("2026-06-03T22:00:00-04:00")
    waiting = gw.send(to="+12125550102").json()["decision_id"]  # due the next morning
    gw.at(MORNING)
    gw.clock.set(gw.clock.now() + timedelta(days=30))  # 30 days after both were due
    assert gw.call(scheduler.purge_finished, gw.runtime) == 0
    gw.clock.set(gw.clock.now() + timedelta(seconds=1))
    assert gw.call(scheduler.purge_finished, gw.runtime) == 2
    assert gw.client.get(f"/v1/deferred/{sent}").status_code == 404
    assert gw.client.get(f"/v1/deferred/{cancelled}").status_code == 404
    assert gw.fate(waiting)["status"] == "pending"
    assert gw.client.get(f"/v1/decisions/{sent}").json()["decision"] == "defer"


def test_deferred_again_when_the_window_moved(gw: Gateway) -> None:
    item_id = hold(gw)
    gw.reload(window_rule('{hours: "10:00-21:00"}'))
    gw.at(MORNING)
    assert gw.run_due() == 1
    fate = gw.fate(item_id)
    assert fate["status"] == "pending" and fate["deliver_at"] == "2026-06-03T14:00:00Z"
    assert fate["result"]["decision"] == "defer"
    assert fate["result"]["deliver_at"] == "2026-06-03T14:00:00Z"
    again = gw.client.get(f"/v1/decisions/{fate['result']['decision_id']}").json()
    assert again["decision"] == "defer" and again["deferred_from"] == item_id
    assert [i["id"] for i in gw.client.get("/v1/deferred").json()["deferred"]] == [item_id]
    gw.at("2026-06-03T10:00:00-04:00")
    assert gw.run_due() == 1
    assert gw.fate(item_id)["status"] == "sent"
    assert len(sandbox(gw)) == 1


def test_list_filters_by_status(gw: Gateway) -> None:
    first, second = hold(gw), hold(gw, to="+12125550101")
    gw.client.delete(f"/v1/deferred/{first}")
    pending = gw.client.get("/v1/deferred?status=pending").json()["deferred"]
    assert [i["id"] for i in pending] == [second]
    assert gw.client.get("/v1/deferred?status=nope").status_code == 400


def test_list_pages_with_a_cursor(gw: Gateway) -> None:
    # Five held for the same moment: the order is the id's, and pages of two
    # show each once.
    held = sorted((hold(gw, to=f"+1212555010{n}") for n in range(5)), reverse=True)
    seen, cursor, pages = [], None, 0
    while True:
        query = "/v1/deferred?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = gw.client.get(query).json()
        seen += [i["id"] for i in page["deferred"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == held and pages == 3
    whole = gw.client.get("/v1/deferred?limit=5").json()
    assert len(whole["deferred"]) == 5  # a full page may have more: the next one is empty
    assert gw.client.get(f"/v1/deferred?cursor={whole['next_cursor']}").json() == {
        "deferred": [],
        "next_cursor": None,
    }


def test_list_refuses_what_it_does_not_take(gw: Gateway) -> None:
    for query, field in [
        ("statuss=pending", "statuss"),
        ("cursor=yesterday", "cursor"),
        ("cursor=1.", "cursor"),
    ]:
        answer = gw.client.get(f"/v1/deferred?{query}")
        assert answer.status_code == 400, query
        assert field in answer.json()["fields"], answer.json()


def test_a_held_limit_per_sender(make_gateway: Make) -> None:
    gw = make_gateway(env={"GATEWAY_SENDERS": "{acme: {max_deferred: 2}}"})
    held = [hold(gw, sender="acme", to=f"+1212555010{n}") for n in range(2)]
    gw.at(NIGHT)
    refused = gw.send(sender="acme", to="+12125550109")
    assert refused.status_code == 403
    reason = refused.json()["reasons"][-1]
    assert reason["rule"] == "deferred-limit"
    assert reason["message"] == "sender 'acme' already holds 2 deferred messages"
    assert gw.send(sender="other").status_code == 202  # the limit is per sender
    gw.client.delete(f"/v1/deferred/{held[0]}")
    assert gw.send(sender="acme", to="+12125550109").status_code == 202


def test_a_timed_out_send_is_not_tried_again(make_gateway: Make) -> None:
    with stub_upstream() as stub:
        stub.delay = 1.0
        gw = make_gateway(
            env={
                "GATEWAY_ROUTES": f"[{{name: native, adapter: native, upstream: '{stub.url}'}}]",
                "GATEWAY_UPSTREAM_READ_TIMEOUT": "0.2",
            }
        )
        item_id = hold(gw)
        gw.at(MORNING)
        assert gw.run_due() == 1
        fate = gw.fate(item_id)
        assert fate["status"] == "failed"
        assert [r["code"] for r in fate["result"]["reasons"]] == ["upstream_unknown"]
        gw.clock.advance(scheduler_lease(gw))
        assert gw.run_due() == 0
        assert len(stub.received) == 1


def test_a_held_message_goes_upstream_byte_for_byte(make_gateway: Make) -> None:
    with stub_upstream() as stub:
        route = f"[{{name: native, adapter: native, upstream: '{stub.url}'}}]"
        gw = make_gateway(env={"GATEWAY_ROUTES": route})
        gw.at(NIGHT)
        raw = (
            '{"tags": ["x"],  "channel":"sms","to":"+12125550100",'
            ' "body":"caf\\u00e9 \u00e9", "category": "marketing"}'
        ).encode()
        answer = gw.client.post("/v1/messages", content=raw)
        assert answer.status_code == 202, answer.text
        gw.at(MORNING)
        assert gw.run_due() == 1
        assert gw.fate(answer.json()["decision_id"])["status"] == "sent"
        assert [r["body"] for r in stub.received] == [raw]


def scheduler_lease(gw: Gateway) -> timedelta:
    return timedelta(milliseconds=scheduler.lease_ms(gw.runtime.settings) + 1)


def claim_and_abandon(gw: Gateway, item_id: str, mark: bool) -> None:
    """Leave the item as a process that died after claiming it leaves it:
    sending, under a lease, marked as cleared to send or not."""
    store = gw.runtime.store
    now_ms = int(gw.clock.now().timestamp() * 1000)
    claimed = gw.call(store.defer_claim_due, now_ms, 10, 60_000)
    assert [c.id for c in claimed] == [item_id]
    if mark:
        claimed[0].result = {scheduler.ATTEMPT: "01DEADBEEF"}
        gw.call(store.defer_put, claimed[0])


def test_a_claim_whose_holder_died_before_sending_is_sent_once(gw: Gateway) -> None:
    item_id = hold(gw)
    gw.at(MORNING)
    claim_and_abandon(gw, item_id, mark=False)
    assert gw.run_due() == 0  # leased
    assert gw.fate(item_id)["status"] == "sending"
    assert gw.client.delete(f"/v1/deferred/{item_id}").status_code == 409
    gw.clock.advance(scheduler_lease(gw))
    assert gw.run_due() == 1
    assert gw.fate(item_id)["status"] == "sent"
    assert len(sandbox(gw)) == 1


def test_a_claim_whose_holder_died_mid_send_is_not_sent_again(gw: Gateway) -> None:
    item_id = hold(gw)
    gw.at(MORNING)
    claim_and_abandon(gw, item_id, mark=True)
    gw.clock.advance(scheduler_lease(gw))
    assert gw.run_due() == 1
    fate = gw.fate(item_id)
    assert fate["status"] == "failed"
    assert fate["result"]["decision_id"] == "01DEADBEEF"
    assert fate["result"]["reasons"][0]["code"] == "upstream_unknown"
    assert sandbox(gw) == []


def test_a_route_that_is_gone_fails_the_message(make_gateway: Make) -> None:
    gw = make_gateway()
    item_id = hold(gw)
    item = gw.call(gw.runtime.store.defer_get, item_id)
    assert item is not None and item.status is DeferStatus.PENDING
    item.payload["route"] = "retired"
    gw.call(gw.runtime.store.defer_put, item)
    gw.at(MORNING)
    assert gw.run_due() == 1
    fate = gw.fate(item_id)
    assert fate["status"] == "failed"
    assert fate["result"]["reasons"][0]["message"] == (
        "the route 'retired' is no longer configured"
    )
