"""`gateway audit query` over the trails of several processes sharing Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.shared.conftest import Launch, Shared, post, sms


def test_query_merges_the_workers_trails_newest_first(
    launch: Launch, shared: Shared, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = launch(shared, data_dir=data)
    second = launch(shared, data_dir=data)
    made = []
    for n in range(6):
        answer = post((first, second)[n % 2], sms(to=f"+1212555010{n}"))
        assert answer.status_code == 201
        made.append(answer.json()["decision_id"])
    first.stop()
    second.stop()
    assert sorted(p.parent.name for p in data.glob("worker-*/audit.db")) == ["worker-1", "worker-2"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_REDIS_URL": shared.url, "GATEWAY_REDIS_PREFIX": shared.prefix}

    def query(*args: str) -> list[dict[str, str]]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "audit", "query", "--data-dir", str(data), *args],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    found = query()
    assert [d["decision_id"] for d in found] == sorted(made, reverse=True)
    # The recipient is hashed with the key the workers keep in Redis.
    one = query("--recipient", "+12125550103")
    assert [d["recipient_hint"] for d in one] == ["+1212…0103"]
