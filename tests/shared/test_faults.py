"""A gateway whose Redis stops or stops answering fails closed (503, nothing
sent, not ready) and recovers by itself when Redis is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx2 as httpx
import redis

from tests.redis_support import RedisServer, own_redis
from tests.server import Server
from tests.stub_upstream import StubUpstream

from .conftest import BOUND, Launch, post, sms

KEY = "gw:secret:{pseudonymization-key}"


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    body = answer.json()
    assert body["code"] == "store_unavailable"
    assert body["error"] == "the state store is unreachable; nothing was sent"


async def traffic_across_a_stop(
    gateway: Server, redis_server: RedisServer
) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """Four senders keep sending; Redis is killed after a few answers. Returns
    the answers to sends started before the kill had finished, and after."""
    before: list[httpx.Response] = []
    after: list[httpx.Response] = []
    stopped = asyncio.Event()

    async def sender(client: httpx.AsyncClient) -> None:
        while len(after) < 20:
            late = stopped.is_set()
            answer = await client.post(gateway.url + "/v1/messages", json=sms())
            (after if late else before).append(answer)

    async def killer() -> None:
        while len(before) < 8:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(redis_server.stop)
        stopped.set()

    async with httpx.AsyncClient(timeout=BOUND) as client:
        senders = [sender(client) for _ in range(4)]
        await asyncio.wait_for(asyncio.gather(killer(), *senders), BOUND)
    return before, after


def test_redis_stopped_mid_traffic_then_back(
    launch: Launch, tmp_path: Path, stub: StubUpstream
) -> None:
    with own_redis(tmp_path / "redis") as redis_server:
        gateway = launch(redis_server.url, cap=1000, env={"GATEWAY_REDIS_TIMEOUT": "0.3"})

        before, after = asyncio.run(traffic_across_a_stop(gateway, redis_server))

        # Whatever was in flight at the kill: each 201 went out, each 503 did not.
        assert {a.status_code for a in before} <= {201, 503}
        assert len(stub.received) == sum(a.status_code == 201 for a in before)
        for answer in after:
            assert_refused(answer)
        sent = len(stub.received)
        assert_refused(post(gateway, sms()))
        assert len(stub.received) == sent
        ready = httpx.get(gateway.url + "/readyz", timeout=BOUND)
        assert ready.status_code == 503
        assert ready.json()["problems"]["store"].startswith("the state store is unreachable")

        redis_server.start()  # same port, and empty: nothing was persisted

        assert post(gateway, sms()).status_code == 201
        assert len(stub.received) == sent + 1
        assert httpx.get(gateway.url + "/readyz", timeout=BOUND).status_code == 200
        # The empty Redis lost the pseudonymization key; the gateway put its own back.
        client = redis.Redis.from_url(redis_server.url)
        try:
            assert client.exists(KEY) == 1
        finally:
            client.close()
        assert "the shared store had lost the pseudonymization key" in gateway.output()


def test_a_redis_that_stops_answering_gives_503(
    launch: Launch, tmp_path: Path, stub: StubUpstream
) -> None:
    with own_redis(tmp_path / "redis") as redis_server:
        gateway = launch(redis_server.url, env={"GATEWAY_REDIS_TIMEOUT": "0.3"})
        redis_server.pause()
        try:
            assert_refused(post(gateway, sms()))
        finally:
            redis_server.resume()
        assert stub.received == []
        assert post(gateway, sms()).status_code == 201


def test_a_gateway_started_before_redis_refuses_then_serves(
    launch: Launch, tmp_path: Path, stub: StubUpstream
) -> None:
    """No key configured: the key lives in Redis. Started while Redis is down,
    the gateway listens, refuses every message with 503 and is not ready;
    once Redis answers it loads the key and serves, no restart."""
    redis_server = RedisServer(tmp_path / "redis")  # its port: nothing listens yet
    gateway = launch(redis_server.url, wait=False, env={"GATEWAY_REDIS_TIMEOUT": "0.3"})
    try:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                ready = httpx.get(gateway.url + "/readyz", timeout=BOUND)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, gateway.output()
                time.sleep(0.1)
        assert ready.status_code == 503
        refused = post(gateway, sms())
        assert_refused(refused)
        assert "X-Gateway-Decision-Id" not in refused.headers  # nothing could be recorded
        assert stub.received == []
        assert "the shared store is unreachable" in gateway.output()
        redis_server.start()
        gateway.wait_ready()
        assert post(gateway, sms()).status_code == 201
        assert len(stub.received) == 1
    finally:
        redis_server.stop()


def test_another_key_in_the_store_refuses_every_message_until_settled(
    launch: Launch, tmp_path: Path, stub: StubUpstream
) -> None:
    """Redis lost its data and a process started meanwhile made a new key:
    this process would hash recipients apart from it (an opt-out written
    through the other would not be seen here), so it refuses every message
    until the store holds its key again; a key merely lost is put back."""
    with own_redis(tmp_path / "redis") as redis_server:
        gateway = launch(redis_server.url, cap=1000)
        assert post(gateway, sms()).status_code == 201
        client = redis.Redis.from_url(redis_server.url)
        try:
            kept = client.get(KEY)
            client.set(KEY, (b"\x01" * 32).hex())  # the other process's key
            deadline = time.monotonic() + BOUND
            while (answer := post(gateway, sms())).status_code != 503:
                assert time.monotonic() < deadline, "never refused"
                time.sleep(0.1)
            assert answer.json()["detail"].startswith(
                "the shared store holds another pseudonymization key than this process"
            )
            sent = len(stub.received)
            assert post(gateway, sms()).status_code == 503 and len(stub.received) == sent
            client.delete(KEY)  # settled: the other key is gone, and this one comes back
            while (answer := post(gateway, sms())).status_code != 201:
                assert time.monotonic() < deadline, "never served again"
                time.sleep(0.1)
            assert client.get(KEY) == kept
        finally:
            client.close()
