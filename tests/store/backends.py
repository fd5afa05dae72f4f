"""What the store tests share: the backends under test and the Redis they need."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.store.base import Store
from tests.redis_support import REDIS_URL, RedisStores, require_redis

__all__ = ["REDIS_URL", "Backend", "RedisStores", "require_redis"]


@dataclass
class Backend:
    """A store under test, and what the contract tests need to know about it."""

    name: str
    store: Store
    reopen: Callable[[], Awaitable[Store]]  # another handle on the same data
    real_expiry: bool  # idempotency records expire on the server's clock, not now_ms
