"""`gateway audit query` over the trails of several processes sharing Redis."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2 as httpx

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

    # A store whose key is not the one the folder remembers would find nothing:
    # refused, as `serve` refuses to start on it.
    remembered = data / "pseudonymization-key.fingerprint"
    assert remembered.is_file()
    remembered.write_text("0" * 64 + "\n")
    done = command(shared, "audit", "query", "--data-dir", str(data), "--recipient", "+12125550103")
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr == (
        f"gateway: the shared store holds another pseudonymization key than the one {remembered}"
        " remembers: is this the same Redis, database and redis_prefix as before? (delete that"
        " file only to accept the store's key)\n"
    )


def test_verify_checks_every_workers_trail(launch: Launch, shared: Shared, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, second = two_workers(launch, shared, data)
    for n in range(4):
        assert post((first, second)[n % 2], sms(to=f"+1212555010{n}")).status_code == 201
    # Any worker answers for every worker's trail in the folder.
    answer = httpx.get(first.url + "/v1/audit/verify").json()
    assert answer["intact"] is True
    assert sorted(Path(t["trail"]).parent.name for t in answer["trails"]) == [
        "worker-1",
        "worker-2",
    ]
    assert sum(t["decisions"] for t in answer["trails"]) == 4
    first.stop()
    second.stop()
    done = command(shared, "audit", "verify", "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["intact"] is True
    trails = {Path(t["trail"]).parent.name: t for t in report["trails"]}
    assert sorted(trails) == ["worker-1", "worker-2"]
    assert [trails[w]["decisions"] for w in ("worker-1", "worker-2")] == [2, 2]
    journal = next((data / "worker-2" / "audit.journal").glob("*.jsonl"))
    changed = journal.read_bytes().replace(b'"decision":"allow"', b'"decision":"allov"', 1)
    journal.write_bytes(changed)
    altered = command(shared, "audit", "verify", "--data-dir", str(data))
    assert altered.returncode == 1
    lines = altered.stdout.splitlines()
    assert lines[0].startswith("worker-1/audit.db: intact, ")
    assert lines[1].startswith(f"worker-2/audit.db: ALTERED at {journal.name} line 1 ")
