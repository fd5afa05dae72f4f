"""What only the Redis store promises: its key layout, atomicity across
processes, bounded failures, and recovery when the server comes back."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.errors import StoreUnavailable
from gateway.store.base import CapCheck, DeferStatus, FactsRequest, OptOutEntry, Store
from gateway.store.redis import RedisStore

from .backends import RedisStores
from .test_contract import ALICE, DAY, WEEK, T, ask, cap, held, peek, send

BOUND = 10.0  # seconds: generous, only so that a hanging call fails the test


async def _keys(stores: RedisStores) -> list[str]:
    client = aioredis.Redis.from_url(stores.url, decode_responses=True)
    try:
        return sorted([k async for k in client.scan_iter(match=stores.prefix + "*")])
    finally:
        await client.aclose()


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisStore("redis://127.0.0.1:6379/0", prefix="gw:{x}:")


async def test_every_key_has_the_prefix_and_a_hash_tag(redis_stores: RedisStores) -> None:
    store = redis_stores.make()
    by_sender = CapCheck("cap:sender-caps:acme", "sender:acme", 100, DAY, True)
    await store.opt_out_put(OptOutEntry("global", ALICE, "+1212555****", T))
    await send(store, ask(cap(5), by_sender, lists=(("global", False),)), T, "s1")
    await store.idempotency_begin("acme:k1", "fp1", T, 60_000)
    await store.defer_put(held("m1", T))
    await store.secret("key", lambda: b"\x00\x01")

    keys = await _keys(redis_stores)
    p = redis_stores.prefix
    assert keys == sorted(
        [
            f"{p}optout:{{{ALICE}}}",
            f"{p}cap:{{{ALICE}}}:cap:caps:{ALICE}",
            f"{p}cap:{{sender:acme}}:cap:sender-caps:acme",
            f"{p}idem:{{acme:k1}}",
            f"{p}secret:{{key}}",
            f"{p}defer:{{queue}}:msg:m1",
            f"{p}defer:{{queue}}:all",
            f"{p}defer:{{queue}}:sender:acme",
            f"{p}defer:{{queue}}:status:pending",
            f"{p}defer:{{queue}}:due",
            f"{p}defer:{{queue}}:pending:acme",
        ]
    )
    # One recipient's opt-outs and recipient-keyed counters share a cluster slot.
    recipient_keys = [k for k in keys if f"{{{ALICE}}}" in k]
    assert len({key_slot(k.encode()) for k in recipient_keys}) == 1


async def test_a_counter_expires_after_its_longest_window(redis_stores: RedisStores) -> None:
    store = redis_stores.make()
    await send(store, ask(cap(2, DAY), cap(5, WEEK)), T, "s1")
    client = aioredis.Redis.from_url(redis_stores.url)
    try:
        ttl = await client.pttl(f"{redis_stores.prefix}cap:{{{ALICE}}}:cap:caps:{ALICE}")
    finally:
        await client.aclose()
    assert DAY < ttl <= WEEK + 1


async def test_old_sends_are_trimmed_when_a_counter_counts(redis_stores: RedisStores) -> None:
    store = redis_stores.make()
    await send(store, ask(cap(5)), T, "old")
    await send(store, ask(cap(5)), T + DAY + 1, "new")
    client = aioredis.Redis.from_url(redis_stores.url, decode_responses=True)
    try:
        members = await client.zrange(
            f"{redis_stores.prefix}cap:{{{ALICE}}}:cap:caps:{ALICE}", 0, -1
        )
    finally:
        await client.aclose()
    assert members == ["new"]


async def test_concurrent_sends_from_two_stores_never_pass_the_cap(
    redis_stores: RedisStores,
) -> None:
    stores = [redis_stores.make(), redis_stores.make()]
    request = ask(cap(5))

    results = await asyncio.wait_for(
        asyncio.gather(*(send(stores[i % 2], request, T, f"s{i}") for i in range(200))),
        BOUND,
    )

    assert sum(facts.counted for facts in results) == 5
    assert (await peek(stores[0], request, T)).caps[0].count == 5


async def test_a_script_flushed_from_the_server_is_loaded_again(
    redis_stores: RedisStores,
) -> None:
    store = redis_stores.make()
    await send(store, ask(cap(5)), T, "s1")
    client = aioredis.Redis.from_url(redis_stores.url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    assert (await send(store, ask(cap(5)), T + 1, "s2")).caps[0].count == 1


# -- a server of our own, to stop and start ---------------------------------------


class RedisServer:
    """A throwaway redis-server on a free port, in a temp folder, keeping nothing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + BOUND
        while not _answers(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test paused it
            self.process.kill()
        self.process.wait(timeout=BOUND)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed: the Redis fault tests need it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = RedisServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def every_operation(store: Store) -> list[Callable[[], Awaitable[Any]]]:
    request = FactsRequest(ALICE, (("global", True),), (cap(5),))
    entry = OptOutEntry("global", ALICE, "+1212555****", T)
    return [
        lambda: store.fetch(request, T, count=True, send_id="s1"),
        lambda: store.refund(request, "s1"),
        lambda: store.opt_out_put(entry),
        lambda: store.opt_out_get("global", ALICE),
        lambda: store.opt_out_delete("global", ALICE),
        lambda: store.idempotency_begin("acme:k1", "fp1", T, 60_000),
        lambda: store.idempotency_finish("acme:k1", {"status": 200}, T, 60_000),
        lambda: store.idempotency_abandon("acme:k1"),
        lambda: store.defer_put(held("m1", T)),
        lambda: store.defer_claim_due(T, 10, 1_000),
        lambda: store.defer_get("m1"),
        lambda: store.defer_list(sender="acme", status=DeferStatus.PENDING),
        lambda: store.defer_finish("m1", DeferStatus.SENT, {}),
        lambda: store.defer_cancel("m1"),
        lambda: store.defer_pending_count("acme"),
        lambda: store.secret("key", lambda: b"k"),
        store.ping,
    ]


async def test_a_stopped_server_makes_every_call_unavailable_until_it_returns(
    own_server: RedisServer,
) -> None:
    stores = RedisStores(own_server.url)
    store = stores.make(timeout=0.5)
    try:
        assert (await send(store, ask(cap(5)), T, "before")).counted

        own_server.stop()
        for operation in every_operation(store):
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(operation(), BOUND)

        own_server.start()  # same port, empty: the scripts must be loaded again
        for operation in every_operation(store):
            await asyncio.wait_for(operation(), BOUND)
        assert (await send(store, ask(cap(5)), T, "after")).counted
        assert (await peek(store, ask(cap(5)), T)).caps[0].count == 1  # a new, empty server
    finally:
        await store.close()


async def test_a_server_that_stops_answering_times_out(own_server: RedisServer) -> None:
    stores = RedisStores(own_server.url)
    store = stores.make(timeout=0.3)
    try:
        await store.ping()
        own_server.pause()
        try:
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await asyncio.wait_for(store.fetch(ask(cap(5)), T, count=True, send_id="s"), BOUND)
        finally:
            own_server.resume()
        await asyncio.wait_for(store.ping(), BOUND)
        assert (await peek(store, ask(cap(5)), T)).caps[0].count <= 1  # it may have run
    finally:
        await store.close()
