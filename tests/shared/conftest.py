"""Real gateway processes (`gateway serve`) sharing one Redis, in front of a
real stub upstream. Each test gets its own key prefix, deleted afterwards, and
every process it starts is stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import REPO
from tests.redis_support import REDIS_URL, delete_prefix, new_prefix, require_redis_sync
from tests.server import Server
from tests.stub_upstream import StubUpstream, stub_upstream

TO = "+12125550100"
BOUND = 60.0  # seconds: generous, only so that a hanging step fails the test


def rules(cap: int, *, opt_out: bool = False) -> str:
    """A frequency cap on each recipient, and no time window: the hour does not matter."""
    text = "rules:\n"
    if opt_out:
        text += "  - {id: opt, type: opt_out, lists: [global]}\n"
    return text + f"  - {{id: cap, type: frequency_cap, limits: [{{count: {cap}, per: 24h}}]}}\n"


def sms(**fields: Any) -> dict[str, Any]:
    return {"channel": "sms", "to": TO, "body": "Sale", "category": "marketing"} | fields


@dataclass
class Shared:
    """Where the gateways of one test keep their state."""

    url: str
    prefix: str


@pytest.fixture
def shared() -> Iterator[Shared]:
    require_redis_sync()
    place = Shared(REDIS_URL, new_prefix())
    yield place
    delete_prefix(place.url, place.prefix)


@pytest.fixture
def stub() -> Iterator[StubUpstream]:
    with stub_upstream() as upstream:
        yield upstream


Launch = Callable[..., Server]


@pytest.fixture
def launch(tmp_path: Path, stub: StubUpstream) -> Iterator[Launch]:
    """Start `gateway serve` on a store (a Shared place, or a Redis URL with the
    default prefix), with a cap of `cap` per recipient and the stub as upstream."""
    started: list[Server] = []
    places: set[tuple[str, str]] = set()

    def start(
        store: Shared | str,
        *args: str,
        cap: int = 5,
        opt_out: bool = False,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        wait: bool = True,
    ) -> Server:
        policies = tmp_path / f"policies-{len(started)}"
        policies.mkdir()
        (policies / "rules.yaml").write_text(rules(cap, opt_out=opt_out), encoding="utf-8")
        url, prefix = (store.url, store.prefix) if isinstance(store, Shared) else (store, "gw:")
        if isinstance(store, Shared):
            places.add((url, prefix))
        environ = {
            "GATEWAY_REDIS_URL": url,
            "GATEWAY_REDIS_PREFIX": prefix,
            "GATEWAY_ROUTES": f'[{{name: native, adapter: native, upstream: "{stub.url}"}}]',
            "GATEWAY_SCHEDULER_INTERVAL": "3600",  # nothing is deferred here
        } | (env or {})
        folder = data_dir or tmp_path / "data"
        server = Server("--policies", str(policies), "--data-dir", str(folder), *args, env=environ)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
    # A running gateway puts its pseudonymization key back within a second of
    # the `shared` fixture's clean-up: cleaned again once every one has stopped.
    for url, prefix in places:
        delete_prefix(url, prefix)


def post(server: Server, body: dict[str, Any], path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=BOUND)


def two_workers(launch: Launch, shared: Shared, folder: Path, **kw: Any) -> tuple[Server, Server]:
    """Two processes on one store and one data folder (worker-1 and worker-2)."""
    return launch(shared, data_dir=folder, **kw), launch(shared, data_dir=folder, **kw)


def command(shared: Shared, *args: str) -> subprocess.CompletedProcess[str]:
    """`gateway ARGS` as an operator of these processes runs it (their store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_REDIS_URL": shared.url, "GATEWAY_REDIS_PREFIX": shared.prefix}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=BOUND,
    )  # fmt: skip
