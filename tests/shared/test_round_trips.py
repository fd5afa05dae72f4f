"""An allowed message without an idempotency key costs exactly one Redis round
trip, counted on a Redis server of the test's own: MONITOR lists the commands
clients sent (a script's own calls are marked as such), and INFO commandstats
shows that the one EVALSHA found its script loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2 as httpx
import redis

from tests.redis_support import own_redis
from tests.stub_upstream import StubUpstream

from .conftest import BOUND, Launch, post, sms

MARKER = "round-trip-test-marker"


def sent_by_clients(monitor: Any) -> list[str]:
    """The commands clients sent until the test's marker (in execution order,
    so everything the gateway sent before its answer is in)."""
    seen: list[str] = []
    while True:
        command = monitor.next_command()
        if MARKER in command["command"]:
            return seen
        if command["client_type"] != "lua":
            seen.append(command["command"].split(" ", 1)[0].upper())


def test_an_allowed_message_costs_one_round_trip(
    launch: Launch, tmp_path: Path, stub: StubUpstream
) -> None:
    with own_redis(tmp_path / "redis") as redis_server:
        # An opt-out list and a cap: both are read, and the send counted, in one script.
        gateway = launch(redis_server.url, cap=10, opt_out=True)
        assert httpx.get(gateway.url + "/readyz", timeout=BOUND).status_code == 200
        client = redis.Redis.from_url(redis_server.url, socket_timeout=BOUND)
        watcher = redis.Redis.from_url(redis_server.url, socket_timeout=BOUND)
        try:
            for n in (1, 2):  # the first message after start, and one more
                client.config_resetstat()  # and the client's one connection is open now
                with watcher.monitor() as monitor:
                    assert post(gateway, sms()).status_code == 201
                    client.echo(MARKER)
                    assert sent_by_clients(monitor) == ["EVALSHA"]
                assert len(stub.received) == n
                stats = client.info("commandstats")["cmdstat_evalsha"]
                assert (stats["calls"], stats["failed_calls"]) == (1, 0)  # no NOSCRIPT
        finally:
            client.close()
            watcher.close()
