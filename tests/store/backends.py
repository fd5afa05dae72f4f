"""What the store tests share: the backends under test and the Redis they need."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store.base import Store
from gateway.store.redis import RedisStore

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def require_redis() -> None:
    """Fail (under CI) or skip the test, loudly, when the test Redis is not there."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        reason = (
            f"Redis at {REDIS_URL} is unreachable ({exc}): start redis-server"
            " or point GATEWAY_TEST_REDIS_URL at one"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs Redis: {reason}")
        pytest.skip(f"REDIS TESTS SKIPPED: {reason}")
    finally:
        await client.aclose()


class RedisStores:
    """Makes RedisStores under one fresh prefix; closes them and deletes the keys."""

    def __init__(self, url: str = REDIS_URL) -> None:
        self.url = url
        self.prefix = f"gwtest:{uuid.uuid4().hex}:"
        self._made: list[RedisStore] = []

    def make(self, url: str | None = None, **kwargs: Any) -> RedisStore:
        store = RedisStore(url or self.url, prefix=self.prefix, **kwargs)
        self._made.append(store)
        return store

    async def cleanup(self) -> None:
        for store in self._made:
            await store.close()
        client = aioredis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        try:
            keys = [key async for key in client.scan_iter(match=self.prefix + "*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@dataclass
class Backend:
    """A store under test, and what the contract tests need to know about it."""

    name: str
    store: Store
    reopen: Callable[[], Awaitable[Store]]  # another handle on the same data
    real_expiry: bool  # idempotency records expire on the server's clock, not now_ms
