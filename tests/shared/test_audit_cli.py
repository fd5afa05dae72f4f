"""`gateway audit query` over the trails of several processes sharing Redis."""

from __future__ import annotations

import json
from pathlib import Path

from tests.shared.conftest import Launch, Shared, command, post, sms, two_workers


def test_query_merges_the_workers_trails_newest_first(
    launch: Launch, shared: Shared, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first, second = two_workers(launch, shared, data)
    made = []
    for n in range(6):
        answer = post((first, second)[n % 2], sms(to=f"+1212555010{n}"))
        assert answer.status_code == 201
        made.append(answer.json()["decision_id"])
    first.stop()
    second.stop()
    assert sorted(p.parent.name for p in data.glob("worker-*/audit.db")) == ["worker-1", "worker-2"]

    def query(*args: str) -> list[dict[str, str]]:
        done = command(shared, "audit", "query", "--data-dir", str(data), *args)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    found = query()
    assert [d["decision_id"] for d in found] == sorted(made, reverse=True)
    # The recipient is hashed with the key the workers keep in Redis.
    one = query("--recipient", "+12125550103")
    assert [d["recipient_hint"] for d in one] == ["+1212…0103"]
