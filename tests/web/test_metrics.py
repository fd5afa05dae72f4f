"""`GET /metrics`: Prometheus text that Prometheus's own parser reads."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway import metrics
from gateway.model import Channel, Code, Decision, Reason, Verdict
from tests.web.conftest import NOON_NY, Make, sms
from tests.web.test_auth import keys


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, by name and labels."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_decisions_failures_and_upstream_answers_are_counted(client: TestClient) -> None:
    for _ in range(3):  # the third is over the cap of two a day
        client.post("/v1/messages", json=sms())
    client.put("/v1/opt-outs/global/+12125550111")
    client.post("/v1/messages", json=sms(to="+12125550111"))
    client.post("/v1/check", json=sms(to="+12125550122"))  # decided, not sent: not counted
    got = scrape(client)
    assert value(got, "gateway_decisions_total", route="native", decision="allow") == 2
    assert value(got, "gateway_decisions_total", route="native", decision="reject") == 2
    capped = {"rule": "marketing-sms-caps", "code": "frequency_capped"}
    assert value(got, "gateway_rule_failures_total", **capped) == 1
    opted = {"rule": "global-opt-out", "code": "opted_out"}
    assert value(got, "gateway_rule_failures_total", **opted) == 1
    assert value(got, "gateway_upstream_responses_total", route="native", status="201") == 2
    latency = {"route": "native"}
    assert value(got, "gateway_upstream_latency_seconds_count", **latency) == 2
    assert value(got, "gateway_upstream_latency_seconds_bucket", le="+Inf", **latency) == 2
    version = client.get("/v1/policies").json()["version"]
    assert value(got, "gateway_policy_info", version=version) == 1


def test_a_store_that_is_down_is_counted(make_client: Make) -> None:
    client = make_client(
        env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0", "GATEWAY_AUDIT_KEY": "k" * 32}
    )
    assert client.post("/v1/messages", json=sms()).status_code == 503
    # What sends no message is refused too, but is no refused message.
    read = client.get("/v1/opt-outs/global/+12125550100")
    assert (read.status_code, read.json()["error"]) == (503, "the state store is unreachable")
    got = scrape(client)
    # Shared mode: the series say which worker counted them.
    assert value(got, "gateway_unavailable_total", part="store", worker="1") == 1
    assert value(got, "gateway_decisions_total", route="native", decision="allow", worker="1") == 0


def test_metrics_are_open_like_health(make_client: Make) -> None:
    client = make_client(env={"GATEWAY_API_KEYS": keys(s3cret="sender")})
    assert client.get("/metrics").status_code == 200
    assert client.post("/metrics").status_code in (401, 405)


def test_histogram_buckets_are_cumulative() -> None:
    counts = metrics.Metrics()
    for ms in (3, 30, 300, 30_000):
        counts.answered("twilio", 201, ms)
    counts.answered("twilio", None, None)
    text = metrics.render([(None, counts.snapshot())], "v1")
    got = {
        (s.name, s.labels.get("le"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    bucket = "gateway_upstream_latency_seconds_bucket"
    assert [got[(bucket, le, None)] for le in ("0.005", "0.05", "0.5", "10", "+Inf")] == [
        1,
        2,
        3,
        3,
        4,
    ]
    assert got[("gateway_upstream_latency_seconds_sum", None, None)] == 30.333
    assert got[("gateway_upstream_responses_total", None, "none")] == 1


def test_label_values_are_escaped() -> None:
    counts = metrics.Metrics()
    decision = Decision(
        decision_id="x",
        decision=Verdict.REJECT,
        at=NOON_NY,
        policy_version="v",
        route='odd"route\\with\nbreaks',
        sender="s",
        channel=Channel.SMS,
        category="marketing",
        recipient="hmac:x",
        recipient_hint="+1…",
        reasons=[Reason("rule-1", Code.BANNED_TERM, "no")],
        trace=[],
    )
    counts.decided(decision)
    text = metrics.render([("2", counts.snapshot())], "v")
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    routes = [s.labels["route"] for s in samples if s.name == "gateway_decisions_total"]
    assert routes == ['odd"route\\with\nbreaks']
