"""Store fixtures: one `backend` parametrized over memory, SQLite and a real Redis.

Redis comes from GATEWAY_TEST_REDIS_URL (default redis://127.0.0.1:6379/0); each
test gets its own key prefix, and its keys are deleted afterwards. When Redis is
unreachable the Redis cases fail under CI=true and are skipped otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store.base import Store
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SqliteStore

from .backends import Backend, RedisStores, require_redis


@pytest.fixture
async def redis_stores() -> AsyncIterator[RedisStores]:
    await require_redis()
    stores = RedisStores()
    yield stores
    await stores.cleanup()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    opened: list[Store] = []
    redis: RedisStores | None = None

    def track(store: Store) -> Store:
        opened.append(store)
        return store

    if request.param == "memory":
        memory = MemoryStore()

        async def same() -> Store:
            return memory

        found = Backend("memory", track(memory), same, real_expiry=False)
    elif request.param == "sqlite":
        path = tmp_path / "state.db"

        async def sqlite() -> Store:
            return track(SqliteStore(path))

        found = Backend("sqlite", await sqlite(), sqlite, real_expiry=False)
    else:
        await require_redis()
        redis = RedisStores()
        made = redis

        async def redis_store() -> Store:
            return made.make()

        found = Backend("redis", await redis_store(), redis_store, real_expiry=True)
    yield found
    for store in opened:
        await store.close()
    if redis is not None:
        await redis.cleanup()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store
