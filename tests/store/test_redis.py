"""What only the Redis store promises: its key layout, atomicity across
processes, bounded failures, and recovery when the server comes back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.errors import StoreUnavailable
from gateway.store.base import (
    CapCheck,
    DeferStatus,
    FactsRequest,
    IdempotencyStatus,
    OptOutEntry,
    Store,
)
from gateway.store.redis import RedisStore
from tests.redis_support import BOUND, RedisServer, RedisStores, own_redis

from .test_contract import ALICE, DAY, WEEK, T, ask, cap, held, peek, send


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
    await store.reloads(bump=True)

    keys = await _keys(redis_stores)
    p = redis_stores.prefix
    assert keys == sorted(
        [
            f"{p}optout:{{{ALICE}}}",
            f"{p}cap:{{{ALICE}}}:cap:caps:{ALICE}",
            f"{p}cap:{{sender:acme}}:cap:sender-caps:acme",
            f"{p}idem:{{acme:k1}}",
            f"{p}secret:{{key}}",
            f"{p}policy:{{reloads}}",
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


async def test_every_process_sees_the_reloads_of_the_others(redis_stores: RedisStores) -> None:
    one, other = redis_stores.make(), redis_stores.make()
    assert await one.reloads(bump=True) == 1
    assert await other.reloads() == 1
    assert await other.reloads(bump=True) == 2
    assert await one.reloads() == 2


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


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis(tmp_path) as server:
        yield server


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


@pytest.fixture
async def quick_store(own_server: RedisServer) -> AsyncIterator[RedisStore]:
    """A store on our own server that gives up on a reply after 0.3 s."""
    store = RedisStores(own_server.url).make(timeout=0.3)
    await store.ping()
    try:
        yield store
    finally:
        await store.close()


async def while_stalled(server: RedisServer, call: Awaitable[Any]) -> StoreUnavailable:
    """The error of `call` made while the server does not answer; once it
    answers again, whatever the call left queued there has run."""
    server.pause()
    try:
        with pytest.raises(StoreUnavailable, match="Timeout") as caught:
            await asyncio.wait_for(call, BOUND)
    finally:
        server.resume()
    return caught.value


async def test_a_count_that_never_left_is_told_apart_from_one_that_timed_out(
    own_server: RedisServer, quick_store: RedisStore
) -> None:
    # Only one that may have run needs its count given back.
    own_server.stop()
    with pytest.raises(StoreUnavailable) as refused:
        await asyncio.wait_for(quick_store.fetch(ask(cap(5)), T, count=True, send_id="s"), BOUND)
    assert refused.value.unsent is True
    own_server.start()
    await asyncio.wait_for(quick_store.ping(), BOUND)
    late = quick_store.fetch(ask(cap(5)), T, count=True, send_id="t")
    assert (await while_stalled(own_server, late)).unsent is False


async def test_a_server_that_stops_answering_times_out(
    own_server: RedisServer, quick_store: RedisStore
) -> None:
    await while_stalled(own_server, quick_store.fetch(ask(cap(5)), T, count=True, send_id="s"))
    await asyncio.wait_for(quick_store.ping(), BOUND)
    assert (await peek(quick_store, ask(cap(5)), T)).caps[0].count <= 1  # it may have run


async def test_a_claim_that_times_out_does_not_hold_its_key(
    own_server: RedisServer, quick_store: RedisStore
) -> None:
    """The sender is told 503 and retries with the same key: the claim the
    stalled server runs afterwards must not keep that retry "in flight"."""
    await while_stalled(own_server, quick_store.idempotency_begin("acme/k", "fp", T, 60_000))
    await asyncio.wait_for(quick_store.ping(), BOUND)  # the late claim and its release have run
    retry = await quick_store.idempotency_begin("acme/k", "fp", T, 60_000)
    assert retry.status is IdempotencyStatus.NEW
    # A claim given up that never landed takes nothing when it does.
    again = await quick_store.idempotency_begin("acme/k", "fp", T, 60_000)
    assert again.status is IdempotencyStatus.IN_FLIGHT  # the retry's own claim holds it


async def test_a_claim_given_up_is_removed_or_takes_nothing_when_it_lands(
    redis_stores: RedisStores,
) -> None:
    # Which of the two a stalled server runs first is not known: both orders.
    store = redis_stores.make()
    keys = [store._idem_key("acme/k"), store._idem_key("acme/k") + ":given-up"]

    def claim(token: str) -> list[object]:
        record = {"fp": "fp", "state": "in_flight", "response": None, "claim": token}
        return ["fp", 60_000, json.dumps(record), token]

    await store._idem_begin(keys=keys, args=claim("late"))  # landed, then given up
    await store._idem_release(keys=keys, args=["late", 60_000])
    assert (await store.idempotency_begin("acme/k", "fp", T, 60_000)).status.value == "new"
    await store.idempotency_abandon("acme/k")

    await store._idem_release(keys=keys, args=["later", 60_000])  # given up before it landed
    assert await store._idem_begin(keys=keys, args=claim("later")) == ["in_flight"]
    assert (await store.idempotency_begin("acme/k", "fp", T, 60_000)).status.value == "new"
    # Giving up a claim never removes another's.
    await store._idem_release(keys=keys, args=["other", 60_000])
    assert (await store.idempotency_begin("acme/k", "fp", T, 60_000)).status.value == "in_flight"
    await store.idempotency_abandon("acme/k")
    # The same claim sent again (the client retries a call whose reply a broken
    # connection lost) finds its own record: it is the claimer still.
    assert await store._idem_begin(keys=keys, args=claim("mine")) == ["new"]
    assert await store._idem_begin(keys=keys, args=claim("mine")) == ["new"]
    assert await store._idem_begin(keys=keys, args=claim("yours")) == ["in_flight"]


async def test_a_counting_send_sees_a_send_stamped_just_after_its_now(
    redis_stores: RedisStores,
) -> None:
    # Two processes read their clocks, then their scripts reach Redis in the
    # other order: the one stamped earlier must still see the one counted first.
    store = redis_stores.make()
    assert (await send(store, ask(cap(1)), T + 5, "stamped-later")).counted
    runs_second = await send(store, ask(cap(1)), T, "stamped-earlier")
    assert runs_second.counted is False
    assert runs_second.caps[0].count == 1
    assert (await peek(store, ask(cap(1)), T)).caps[0].count == 0  # a question about T itself
