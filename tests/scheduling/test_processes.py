"""Real `gateway serve` processes sending to a real HTTP stub: a held message
survives a kill and is sent once by the restarted process; in shared mode two
processes on one Redis send each held message exactly once.

Windows open on whole minutes, so every process here holds its messages for
one shared opening: the next minute boundary at least LEAD seconds away.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis

from tests.server import Server, start
from tests.stub_upstream import StubUpstream, stub_upstream

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LEAD = timedelta(seconds=8)  # time to hold, kill and restart before the window opens
ALONE = "+12125550111"
SHARED = [f"+1212555012{n}" for n in range(4)]


@dataclass
class World:
    stub: StubUpstream
    opening: datetime
    embedded: Server
    embedded_dir: Path
    policies: Path
    env: dict[str, str]
    shared: list[Server] = field(default_factory=list)
    redis_problem: str | None = None
    held: dict[str, str] = field(default_factory=dict)  # number -> deferred id


def redis_problem() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis at {REDIS_URL} is unreachable ({exc})"
    return None


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


def window(opening: datetime) -> str:
    closing = opening + timedelta(minutes=10)
    return (
        "rules:\n"
        "  - {id: opt, type: opt_out, lists: [global]}\n"
        "  - {id: later, type: time_window, match: {tags: [later]},"
        f" allow: {{hours: '{opening:%H:%M}-{closing:%H:%M}'}}, action: defer}}\n"
    )


def hold(server: Server, number: str) -> str:
    body = {"channel": "sms", "to": number, "body": f"Held for {number}", "tags": ["later"]}
    answer = httpx.post(server.url + "/v1/messages", json=body | {"recipient_timezone": "UTC"})
    assert answer.status_code == 202, answer.text
    item_id: str = answer.json()["decision_id"]
    return item_id


@pytest.fixture(scope="module", autouse=True)
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Every process started and every message held before the shared opening."""
    tmp = tmp_path_factory.mktemp("processes")
    policies = tmp / "policies"
    policies.mkdir()
    (policies / "rules.yaml").write_text("rules: []\n")
    prefix = f"gwtest:{uuid.uuid4().hex}:"
    with stub_upstream() as stub:
        env = {
            "GATEWAY_ROUTES": f"[{{name: native, adapter: native, upstream: '{stub.url}'}}]",
            "GATEWAY_SCHEDULER_INTERVAL": "0.2",
        }
        embedded = start(tmp / "embedded", "--policies", str(policies), env=env)
        found = World(stub, datetime.now(UTC), embedded, tmp / "embedded", policies, env)
        try:
            found.redis_problem = redis_problem()
            if found.redis_problem is None:
                shared_env = env | {
                    "GATEWAY_REDIS_URL": REDIS_URL,
                    "GATEWAY_REDIS_PREFIX": prefix,
                    "GATEWAY_AUDIT_KEY": "process-test-key-0123456789",
                }
                for n in range(2):
                    server = start(tmp / f"shared-{n}", "--policies", str(policies), env=shared_env)
                    found.shared.append(server)
            open_window(found, [found.embedded, *found.shared])
            yield found
        finally:
            for server in [found.embedded, *found.shared]:  # the restarted one included
                server.stop()
            if found.redis_problem is None:
                delete_prefix(prefix)


def open_window(found: World, servers: list[Server]) -> None:
    """Pick the opening, switch every process to the window, hold the messages."""
    soon = datetime.now(UTC) + LEAD
    found.opening = soon.replace(second=0, microsecond=0) + timedelta(minutes=1)
    (found.policies / "rules.yaml").write_text(window(found.opening))
    for server in servers:
        assert httpx.post(server.url + "/v1/policies/reload").status_code == 200
    found.held[ALONE] = hold(found.embedded, ALONE)
    for n, number in enumerate(SHARED if found.shared else []):
        found.held[number] = hold(found.shared[n % 2], number)


def wait_for(what: str, check: Callable[[], Any], until: datetime) -> Any:
    """Poll `check` until it returns something truthy, failing after `until`."""
    while datetime.now(UTC) < until:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def received(stub: StubUpstream, number: str) -> int:
    return sum(1 for r in list(stub.received) if json.loads(r["body"])["to"] == number)


def fate(server: Server, item_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{server.url}/v1/deferred/{item_id}").json()
    return answer


def test_a_held_message_survives_a_kill_and_is_sent_once(world: World) -> None:
    item_id = world.held[ALONE]
    world.embedded.kill()
    world.embedded = start(world.embedded_dir, "--policies", str(world.policies), env=world.env)
    assert datetime.now(UTC) < world.opening, "the restart took longer than the lead"
    assert fate(world.embedded, item_id)["status"] == "pending"
    assert received(world.stub, ALONE) == 0
    deadline = world.opening + timedelta(seconds=20)

    def sent() -> dict[str, Any] | None:
        found = fate(world.embedded, item_id)
        return found if found["status"] != "pending" and found["status"] != "sending" else None

    done = wait_for("the held message to be sent", sent, deadline)
    assert done["status"] == "sent" and done["result"]["message_id"] == "SM123"
    time.sleep(1.0)  # several scheduler rounds (every 0.2 s) after the send
    assert received(world.stub, ALONE) == 1
    record = httpx.get(f"{world.embedded.url}/v1/decisions/{done['result']['decision_id']}")
    assert record.json()["deferred_from"] == item_id
    assert record.json()["upstream"]["status"] == 201


def test_two_shared_processes_send_each_held_message_once(world: World) -> None:
    if world.redis_problem is not None:
        reason = f"{world.redis_problem}: start redis-server or set GATEWAY_TEST_REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs Redis: {reason}")
        pytest.skip(f"REDIS TESTS SKIPPED: {reason}")
    deadline = world.opening + timedelta(seconds=20)
    first, second = world.shared
    for number in SHARED:
        item_id = world.held[number]
        assert fate(second, item_id)["deliver_at"] == fate(first, item_id)["deliver_at"]

        def sent(item_id: str = item_id) -> bool:
            return bool(fate(first, item_id)["status"] == "sent")

        wait_for(f"{number} to be sent", sent, deadline)
    time.sleep(1.0)  # several rounds of both schedulers after the sends
    assert {n: received(world.stub, n) for n in SHARED} == dict.fromkeys(SHARED, 1)
    for number in SHARED:
        result = fate(second, world.held[number])["result"]
        found = [
            httpx.get(f"{s.url}/v1/decisions/{result['decision_id']}").status_code
            for s in world.shared
        ]
        assert sorted(found) == [200, 404]  # recorded by the one process that sent it
