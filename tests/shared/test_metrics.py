"""`GET /metrics` with several processes: any of them serves every worker's counts."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.shared.conftest import BOUND, Launch, Shared, post, sms, two_workers


def allowed_by_worker(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=BOUND).text
    return {
        s.labels["worker"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_decisions_total" and s.labels["decision"] == "allow"
    }


def test_any_worker_serves_every_workers_counts(
    launch: Launch, shared: Shared, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first, second = two_workers(launch, shared, data)
    for n in range(5):
        assert post((first, first, first, second, second)[n], sms(to=f"+1212555010{n}")).is_success
    deadline = time.monotonic() + BOUND  # each worker writes its counts every second
    while time.monotonic() < deadline:
        seen = [allowed_by_worker(server.url) for server in (first, second)]
        if seen == [{"1": 3, "2": 2}] * 2:
            break
        time.sleep(0.2)
    assert seen == [{"1": 3, "2": 2}] * 2
    # A restarted worker starts its own series from zero; the other's stay.
    second.stop()
    third = launch(shared, data_dir=data)
    assert post(third, sms(to="+12125550109")).is_success
    while time.monotonic() < deadline and allowed_by_worker(first.url) != {"1": 3, "2": 1}:
        time.sleep(0.2)
    assert allowed_by_worker(first.url) == {"1": 3, "2": 1}
