"""A gateway in process (starlette's TestClient), with a fixed clock and the
sample-like bundle written per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.clock import FixedClock
from gateway.settings import load_settings

BASE_RULES = """
rules:
  - id: global-opt-out
    type: opt_out
    lists: [global, "sender:{sender}"]
    unless: {category: transactional}
  - id: marketing-sms-caps
    type: frequency_cap
    match: {channel: sms, category: marketing}
    limits: [{count: 2, per: 24h}]
  - id: sms-three-segments
    type: content_length
    match: {channel: sms}
    max_segments: 3
  - id: finance-claims
    type: banned_terms
    terms: ["guaranteed returns"]
  - id: tcpa-quiet-hours
    type: time_window
    match: {channel: sms, category: marketing, country: US}
    allow: {hours: "08:00-21:00"}
    action: defer
"""

# 2026-06-02 15:00 UTC is 11:00 in New York: inside the window.
NOON_NY = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)

Make = Callable[..., TestClient]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOON_NY)


@pytest.fixture
def make_client(
    tmp_path: Path, write_policies: Callable[..., Path], clock: FixedClock
) -> Iterator[Make]:
    clients: list[TestClient] = []

    def make(rules: str = BASE_RULES, env: dict[str, str] | None = None, **kw: Any) -> TestClient:
        root = write_policies({"rules.yaml": rules}, folder=f"policies-{len(clients)}")
        environ = {"GATEWAY_DATA_DIR": str(tmp_path / f"data-{len(clients)}")} | (env or {})
        settings = load_settings(None, environ, policies=root, **kw)
        client = TestClient(create_app(settings, clock=clock, run_scheduler=False))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Make) -> TestClient:
    return make_client()


def app_with(tmp_path: Path, write_policies: Callable[..., Path], **parts: Any) -> Any:
    """An empty bundle's app with some of its parts given (a store, a trail)."""
    root = write_policies({"rules.yaml": "rules: []\n"})
    settings = load_settings(None, {"GATEWAY_DATA_DIR": str(tmp_path / "data")}, policies=root)
    return create_app(settings, clock=FixedClock(NOON_NY), run_scheduler=False, **parts)


def sms(**fields: Any) -> dict[str, Any]:
    return {
        "channel": "sms",
        "to": "+12125550100",
        "body": "Hello",
        "category": "marketing",
    } | fields
