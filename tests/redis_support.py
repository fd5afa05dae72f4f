"""What every Redis test needs: the test Redis (or a loud skip), stores under a
fresh key prefix that is deleted afterwards, and throwaway servers of our own
to stop, start and pause.

Redis comes from GATEWAY_TEST_REDIS_URL (default redis://127.0.0.1:6379/0).
When it is unreachable (or redis-server is missing, for the throwaway ones),
the tests fail under CI=true and are skipped with a loud reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store.redis import RedisStore

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BOUND = 10.0  # seconds: generous, only so that a hanging step fails the test


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs Redis: {reason}")
    pytest.skip(f"REDIS TESTS SKIPPED: {reason}")


async def require_redis() -> None:
    """Fail (under CI) or skip the test, loudly, when the test Redis is not there."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        _missing(
            f"Redis at {REDIS_URL} is unreachable ({exc}): start redis-server"
            " or point GATEWAY_TEST_REDIS_URL at one"
        )
    finally:
        await client.aclose()


def require_redis_sync() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        _missing(
            f"Redis at {REDIS_URL} is unreachable ({exc}): start redis-server"
            " or point GATEWAY_TEST_REDIS_URL at one"
        )
    finally:
        client.close()


def new_prefix() -> str:
    return f"gwtest:{uuid.uuid4().hex}:"


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class RedisStores:
    """Makes RedisStores under one fresh prefix; closes them and deletes the keys."""

    def __init__(self, url: str = REDIS_URL) -> None:
        self.url = url
        self.prefix = new_prefix()
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


class RedisServer:
    """A throwaway redis-server on a free port, in a temp folder, keeping nothing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
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


@contextmanager
def own_redis(folder: Path) -> Iterator[RedisServer]:
    """A started RedisServer, always killed afterwards."""
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed: the Redis fault tests need it")
    server = RedisServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def free_port() -> int:
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
