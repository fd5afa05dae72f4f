"""A real gateway server (uvicorn, ephemeral port, background thread) in front of
a real stub upstream, for provider SDKs that make real HTTP calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.clock import FixedClock
from gateway.settings import load_settings
from tests.stub_upstream import StubUpstream, stub_upstream
from tests.web.conftest import (  # noqa: F401 - shared fixtures
    BASE_RULES,
    NOON_NY,
    client,
    clock,
    make_client,
)

# The web tests' bundle, plus caps and a window for email and push.
RULES = (
    BASE_RULES
    + """
  - id: marketing-email-caps
    type: frequency_cap
    match: {channel: email, category: marketing}
    limits: [{count: 1, per: 24h}]
  - id: push-caps
    type: frequency_cap
    match: {channel: push}
    limits: [{count: 1, per: 1h}]
  - id: email-quiet-hours
    type: time_window
    match: {channel: email}
    allow: {hours: "08:00-21:00"}
    fallback_timezone: America/New_York
    action: defer
"""
)


@dataclass
class Live:
    url: str
    clock: FixedClock
    stub: StubUpstream
    http: httpx.Client

    def opt_out(self, address: str, list_name: str = "global") -> None:
        assert self.http.put(f"/v1/opt-outs/{list_name}/{address}").status_code in (200, 201)

    def decision(self, decision_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/v1/decisions/{decision_id}")
        assert answer.status_code == 200, answer.text
        record: dict[str, Any] = answer.json()
        return record

    def deferred_fate(self, deferred_id: str, seconds: float = 10) -> dict[str, Any]:
        """The held message once the scheduler has handled it (polled: it runs apart)."""
        deadline = time.monotonic() + seconds
        while True:
            item: dict[str, Any] = self.http.get(f"/v1/deferred/{deferred_id}").json()
            if item["status"] not in ("pending", "sending") or time.monotonic() > deadline:
                return item
            time.sleep(0.05)


def header(received: dict[str, Any], name: str) -> str | None:
    """A header the stub received, by name in any case."""
    found = [v for k, v in received["headers"].items() if k.lower() == name.lower()]
    return found[0] if found else None


def routes(url: str, **extra: str) -> str:
    entries = [
        f'{{name: {n}, adapter: {n}, upstream: "{url}"{extra.get(n, "")}}}'
        for n in ("twilio", "sendgrid", "fcm")
    ]
    return "[" + ", ".join([*entries, "{name: native, adapter: native, upstream: sandbox}"]) + "]"


class Server:
    """uvicorn on an ephemeral port in a thread; `should_exit` stops it."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the gateway did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


StartLive = Callable[..., Live]


@pytest.fixture
def start_live(tmp_path: Path, write_policies: Callable[..., Path]) -> Iterator[StartLive]:
    with ExitStack() as stack:
        count = 0

        def start(
            rules: str = RULES, env: dict[str, str] | None = None, upstream: str | None = None
        ) -> Live:
            nonlocal count
            count += 1
            stub = stack.enter_context(stub_upstream())
            root = write_policies({"rules.yaml": rules}, folder=f"policies-{count}")
            environ = {
                "GATEWAY_DATA_DIR": str(tmp_path / f"data-{count}"),
                "GATEWAY_ROUTES": routes(upstream or stub.url),
                "GATEWAY_SCHEDULER_INTERVAL": "0.05",
                "GATEWAY_UPSTREAM_READ_TIMEOUT": "2",
            } | (env or {})
            clock = FixedClock(NOON_NY)
            server = Server(create_app(load_settings(None, environ, policies=root), clock=clock))
            stack.callback(server.stop)
            http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
            return Live(server.url, clock, stub, http)

        yield start


@pytest.fixture
def live(start_live: StartLive) -> Live:
    return start_live()
