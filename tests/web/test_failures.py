"""Store or trail down: 503 and nothing sent. Upstream answers come back unchanged;
only when it gives none does the gateway answer 502 or 504."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.clock import FixedClock
from gateway.errors import StoreUnavailable
from gateway.settings import load_settings
from gateway.store.base import DeferStatus
from gateway.store.memory import MemoryStore
from tests.stub_upstream import stub_upstream
from tests.web.conftest import BASE_RULES, Make, sms


def test_store_unreachable_fails_closed(make_client: Make) -> None:
    client = make_client(
        env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0", "GATEWAY_AUDIT_KEY": "k" * 32}
    )
    answer = client.post("/v1/messages", json=sms())
    assert answer.status_code == 503
    assert answer.json()["code"] == "store_unavailable"
    assert client.get("/v1/sandbox/messages").json()["messages"] == []
    assert client.get("/readyz").status_code == 503
    refused = client.get("/v1/decisions", params={"code": "store_unavailable"}).json()
    assert len(refused["decisions"]) == 1
    assert answer.headers["X-Gateway-Decision-Id"] == refused["decisions"][0]["decision_id"]
    # The answer is the refusal as a decision, as the record keeps it.
    body = answer.json()
    assert body["decision_id"] == refused["decisions"][0]["decision_id"]
    assert body["decision"] == "reject" and body["recipient_hint"] == "+1212…0100"
    assert [r["code"] for r in body["reasons"]] == ["store_unavailable"]
    checked = client.post("/v1/check", json=sms())
    assert checked.status_code == 503
    assert checked.json()["decision"] == "reject"
    assert checked.headers["X-Gateway-Decision-Id"] == checked.json()["decision_id"]
    # With an idempotency key (which cannot be claimed), the same refusal.
    keyed = client.post("/v1/messages", json=sms(idempotency_key="k1"))
    assert keyed.status_code == 503
    assert keyed.json()["decision"] == "reject"
    assert [r["code"] for r in keyed.json()["reasons"]] == ["store_unavailable"]
    assert keyed.headers["X-Gateway-Decision-Id"] == keyed.json()["decision_id"]


def routes(url: str) -> str:
    return f'[{{name: native, adapter: native, upstream: "{url}"}}]'


def test_upstream_answer_comes_back_unchanged(make_client: Make) -> None:
    with stub_upstream() as stub:
        client = make_client(env={"GATEWAY_ROUTES": routes(stub.url + "/send")})
        answer = client.post("/v1/messages", json=sms(body="hi"))
        assert answer.status_code == 201
        assert answer.json()["upstream"]["body"] == {"sid": "SM123", "status": "queued"}
        assert answer.json()["upstream"]["message_id"] == "SM123"
        assert stub.received[0]["path"] == "/send"
        assert stub.received[0]["body"] == answer.request.content


def test_upstream_refusal_is_passed_on_and_not_counted(make_client: Make) -> None:
    with stub_upstream() as stub:
        client = make_client(env={"GATEWAY_ROUTES": routes(stub.url)})
        stub.status, stub.answer = 500, {"error": "boom"}
        for _ in range(3):
            answer = client.post("/v1/messages", json=sms())
            assert answer.status_code == 500
            assert answer.json()["upstream"]["body"] == {"error": "boom"}
            assert answer.json()["reasons"][-1]["code"] == "upstream_error"
        stub.status, stub.answer = 201, {"sid": "SM1"}
        assert client.post("/v1/messages", json=sms()).status_code == 201
        assert client.post("/v1/messages", json=sms()).status_code == 201
        assert client.post("/v1/messages", json=sms()).status_code == 429


def test_unreachable_upstream_is_502_and_not_counted(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_ROUTES": routes("http://127.0.0.1:1")})
    for _ in range(3):
        answer = client.post("/v1/messages", json=sms())
        assert answer.status_code == 502
        assert answer.json()["reasons"][-1]["code"] == "upstream_error"
    record = client.get(f"/v1/decisions/{answer.json()['decision_id']}").json()
    assert record["upstream"]["status"] is None
    assert record["reasons"][-1]["code"] == "upstream_error"


def test_upstream_timeout_is_504_and_counted(make_client: Make) -> None:
    with stub_upstream() as stub:
        client = make_client(
            env={"GATEWAY_ROUTES": routes(stub.url), "GATEWAY_UPSTREAM_READ_TIMEOUT": "0.2"}
        )
        stub.delay = 0.5
        for _ in range(2):
            answer = client.post("/v1/messages", json=sms())
            assert answer.status_code == 504
            assert answer.json()["reasons"][-1]["code"] == "upstream_unknown"
        stub.delay = 0
        assert client.post("/v1/messages", json=sms()).status_code == 429


def test_trail_whose_index_cannot_be_written_fails_closed(
    make_client: Make, tmp_path: Path
) -> None:
    """Another process holds the trail's database. A decision is durable once
    its journal line is written, so sends go on while the index waits for
    the database; once the index gives up, decisions could no longer reach a
    trail an auditor can read, so nothing is sent and counts are given back.
    Released, the index catches up and nothing is lost."""
    with stub_upstream() as stub:
        client = make_client(env={"GATEWAY_ROUTES": routes(stub.url)})
        assert client.get("/readyz").status_code == 200
        trail_file = next(tmp_path.glob("data-0/**/audit.db"))
        holder = sqlite3.connect(trail_file, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            first = client.post("/v1/messages", json=sms())
            assert first.status_code == 201  # 1 of the cap's 2, in the journal
            _wait_for(lambda: client.get("/readyz").status_code == 503)
            answer = client.post("/v1/messages", json=sms())
            assert answer.status_code == 503
            assert answer.json()["error"] == "the audit trail is unreachable; nothing was sent"
            # A refusal the trail could not keep: a decision without an id.
            assert answer.json()["decision"] == "reject"
            assert answer.json()["reasons"][0]["rule"] == "trail"
            assert answer.json()["decision_id"] is None
            assert "X-Gateway-Decision-Id" not in answer.headers
            assert len(stub.received) == 1
            # the gateway goes on answering what needs no trail
            assert client.get("/healthz").status_code == 200
            assert client.post("/v1/check", json=sms()).status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        _wait_for(lambda: client.get("/readyz").status_code == 200)
        assert client.post("/v1/messages", json=sms()).status_code == 201  # the count came back
        capped = client.post("/v1/messages", json=sms())
        assert capped.status_code == 429
        assert len(stub.received) == 2
        found = client.get("/v1/decisions", params={"limit": 10}).json()["decisions"]
        ids = [d["decision_id"] for d in found]
        assert first.headers["X-Gateway-Decision-Id"] in ids
        assert capped.headers["X-Gateway-Decision-Id"] == ids[0]


def _wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the trail's state never changed"
        time.sleep(0.1)


class StoreGoneAfterTheDecision(MemoryStore):
    """A store that answers the decision's fetch and then is gone: every
    write that follows (the refund, the idempotency answer, a hold) fails."""

    gone = False

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        facts = await super().fetch(*args, **kwargs)
        self.gone = True
        return facts

    async def refund(self, *args: Any, **kwargs: Any) -> None:
        if self.gone:
            raise StoreUnavailable("the store went away")
        await super().refund(*args, **kwargs)

    async def idempotency_finish(self, *args: Any, **kwargs: Any) -> None:
        if self.gone:
            raise StoreUnavailable("the store went away")
        await super().idempotency_finish(*args, **kwargs)


def test_a_store_lost_after_the_send_leaves_the_upstreams_answer(
    tmp_path: Path, write_policies: Callable[..., Path]
) -> None:
    """Once the upstream has been called its answer is the sender's: a store
    that fails afterwards (giving the count back, keeping the answer for
    repeats) is logged, and never turns the answer into a 503."""
    store = StoreGoneAfterTheDecision()
    with stub_upstream() as stub:
        environ = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_ROUTES": routes(stub.url)}
        settings = load_settings(None, environ, policies=write_policies({"rules.yaml": BASE_RULES}))
        # Noon in New York: inside the quiet-hours window, whenever the test runs.
        noon = FixedClock(datetime(2026, 6, 2, 16, 0, tzinfo=UTC))
        app = create_app(settings, store=store, clock=noon, run_scheduler=False)
        with TestClient(app) as client:
            stub.status, stub.answer = 500, {"error": "boom"}
            answer = client.post("/v1/messages", json=sms(idempotency_key="k-lost"))
            assert answer.status_code == 500
            assert answer.json()["upstream"]["body"] == {"error": "boom"}
            assert len(stub.received) == 1


class HoldTimesOutButLands(MemoryStore):
    """A hold whose write reaches the store while its caller times out."""

    async def defer_put(self, message: Any) -> None:
        await super().defer_put(message)
        raise StoreUnavailable("no reply in time")


NOON_NY = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)
NIGHT_NY = datetime(2026, 6, 3, 3, 0, tzinfo=UTC)  # 23:00 in New York


def _client(
    store: MemoryStore, at: datetime, tmp_path: Path, write_policies: Callable[..., Path]
) -> TestClient:
    """The base rules' gateway on `store`, its clock fixed at `at`."""
    environ = {"GATEWAY_DATA_DIR": str(tmp_path / "data")}
    settings = load_settings(None, environ, policies=write_policies({"rules.yaml": BASE_RULES}))
    app = create_app(settings, store=store, clock=FixedClock(at), run_scheduler=False)
    return TestClient(app)


class CountTimesOut(MemoryStore):
    """A count that is made while its caller times out."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        facts = await super().fetch(*args, **kwargs)
        if self.failing:
            self.failing = False
            raise StoreUnavailable("no reply in time")
        return facts


def test_a_count_made_for_a_503_is_given_back(
    tmp_path: Path, write_policies: Callable[..., Path]
) -> None:
    # Only messages that were sent count: one refused with 503 must not use up
    # the recipient's cap.
    store = CountTimesOut()
    with _client(store, NOON_NY, tmp_path, write_policies) as client:
        assert client.post("/v1/messages", json=sms()).status_code == 503
        checked = client.post("/v1/check", json=sms()).json()
        (cap,) = [r for r in checked["trace"] if r["rule"] == "marketing-sms-caps"]
        assert cap["detail"]["count"] == 0


class HoldLandsAfterTheTimeOut(MemoryStore):
    """A hold whose write times out, and reaches the store only later."""

    def __init__(self) -> None:
        super().__init__()
        self.late: list[Any] = []

    async def defer_put(self, message: Any) -> None:
        if message.status is DeferStatus.PENDING and not self.late:
            self.late.append(message)
            raise StoreUnavailable("no reply in time")
        await super().defer_put(message)


def test_a_hold_that_lands_after_its_503_is_never_sent(
    tmp_path: Path, write_policies: Callable[..., Path]
) -> None:
    store = HoldLandsAfterTheTimeOut()
    with _client(store, NIGHT_NY, tmp_path, write_policies) as client:
        answer = client.post("/v1/messages", json=sms())
        assert answer.status_code == 503
        asyncio.run(store.defer_put(store.late[0]))  # the write lands now
        fate = client.get(f"/v1/deferred/{store.late[0].id}").json()
        assert fate["status"] == "cancelled"
        assert asyncio.run(store.defer_claim_due(10**13, 10, 1000)) == []


def test_a_hold_that_timed_out_is_taken_back(
    tmp_path: Path, write_policies: Callable[..., Path]
) -> None:
    """The 503 says nothing will be sent: a hold that landed all the same is
    cancelled, so the scheduler never sends it."""
    store = HoldTimesOutButLands()
    with _client(store, NIGHT_NY, tmp_path, write_policies) as client:
        answer = client.post("/v1/messages", json=sms())
        assert answer.status_code == 503
        held = client.get("/v1/deferred").json()["deferred"]
        assert [item["status"] for item in held] == ["cancelled"]
        # Its decision was recorded before the hold (a process that died in
        # between would leave no held message without one) and now says why
        # nothing will be sent: one record, under the id the 503 names.
        recorded = client.get("/v1/decisions").json()["decisions"]
        assert [d["decision_id"] for d in recorded] == [answer.headers["X-Gateway-Decision-Id"]]
        assert recorded[0]["decision_id"] == held[0]["id"]
        assert recorded[0]["decision"] == "reject"
        assert recorded[0]["reasons"][-1]["code"] == "store_unavailable"
        assert client.get("/v1/audit/verify").json()["intact"] is True


class ReloadsUntold(MemoryStore):
    """A store that cannot count a reload (Redis gone just then)."""

    async def reloads(self, *, bump: bool = False) -> int:
        if bump:
            raise StoreUnavailable("no reply in time")
        return await super().reloads()


def test_a_reload_the_store_cannot_count_is_served_here_and_says_so(
    tmp_path: Path, write_policies: Callable[..., Path]
) -> None:
    environ = {"GATEWAY_DATA_DIR": str(tmp_path / "data")}
    folder = write_policies({"rules.yaml": BASE_RULES})
    settings = load_settings(None, environ, policies=folder)
    with TestClient(create_app(settings, store=ReloadsUntold(), run_scheduler=False)) as client:
        (folder / "rules.yaml").write_text("rules: []\n")
        answer = client.post("/v1/policies/reload")
        assert answer.status_code == 200
        assert answer.json()["rules"] == 0
        assert "the other processes could not be told" in answer.json()["warning"]
        assert client.get("/v1/policies").json()["rules"] == []


def test_a_drop_in_hold_that_timed_out_leaves_one_record_saying_so(
    tmp_path: Path, write_policies: Callable[..., Path]
) -> None:
    """As for the native API: the decision is durable before the hold, and a
    hold that fails amends it; the 503 names it and nothing stays held."""
    store = HoldTimesOutButLands()
    with _client(store, NIGHT_NY, tmp_path, write_policies) as client:
        form = {"To": "+12125550100", "From": "+12125550199", "Body": "Sale"}
        answer = client.post("/2010-04-01/Accounts/AC1/Messages.json", data=form)
        assert answer.status_code == 503
        assert [i["status"] for i in client.get("/v1/deferred").json()["deferred"]] == ["cancelled"]
        recorded = client.get("/v1/decisions").json()["decisions"]
        assert [d["decision_id"] for d in recorded] == [answer.headers["X-Gateway-Decision-Id"]]
        assert (recorded[0]["decision"], recorded[0]["reasons"][-1]["code"]) == (
            "reject",
            "store_unavailable",
        )
