"""Two gateway processes on one Redis enforce one set of limits: a cap of N
lets exactly N of many concurrent sends through, and one idempotency key sends
once, whichever process each request reaches."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx2 as httpx
import redis

from tests.server import Server
from tests.stub_upstream import StubUpstream

from .conftest import BOUND, Launch, Shared, post, sms

CAP = 7
SENDS = 240


async def fire(
    servers: list[Server], bodies: list[dict[str, Any]], parallel: int = 48
) -> list[httpx.Response]:
    """Send every body at once (at most `parallel` in flight), alternating servers."""
    gate = asyncio.Semaphore(parallel)
    limits = httpx.Limits(max_connections=parallel)
    async with httpx.AsyncClient(timeout=BOUND, limits=limits) as client:

        async def one(i: int, body: dict[str, Any]) -> httpx.Response:
            async with gate:
                url = servers[i % len(servers)].url + "/v1/messages"
                return await client.post(url, json=body)

        sends = (one(i, body) for i, body in enumerate(bodies))
        return await asyncio.wait_for(asyncio.gather(*sends), BOUND)


def test_a_cap_holds_across_two_processes(
    launch: Launch, shared: Shared, stub: StubUpstream
) -> None:
    gateways = [launch(shared, cap=CAP), launch(shared, cap=CAP)]

    answers = asyncio.run(fire(gateways, [sms()] * SENDS))

    assert Counter(a.status_code for a in answers) == {201: CAP, 429: SENDS - CAP}
    assert len(stub.received) == CAP
    for answer in answers:
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) >= 1
            assert [r["code"] for r in answer.json()["reasons"]] == ["frequency_capped"]
    # Both processes see the same count, and Redis holds exactly the sends that went out.
    for gateway in gateways:
        check = post(gateway, sms(), "/v1/check").json()
        (cap,) = [t for t in check["trace"] if t["rule"] == "cap"]
        assert cap["detail"]["count"] == CAP
    token = check["recipient"]
    client = redis.Redis.from_url(shared.url)
    try:
        assert client.zcard(f"{shared.prefix}cap:{{{token}}}:cap:cap:{token}") == CAP
    finally:
        client.close()


def test_one_idempotency_key_sends_once_across_two_processes(
    launch: Launch, shared: Shared, stub: StubUpstream
) -> None:
    gateways = [launch(shared), launch(shared)]
    stub.delay = 0.3  # the first send is still in flight when the others arrive

    answers = asyncio.run(fire(gateways, [sms(idempotency_key="order-42")] * 20))

    assert len(stub.received) == 1
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["decision_id"] for a in answers}) == 1
    replayed = [a for a in answers if a.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == 19
