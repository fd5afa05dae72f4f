"""A gateway in process with a fixed clock, whose scheduler the tests run by
hand (`Gateway.run_due`), and helpers shared by the scheduling tests."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from gateway import scheduler
from gateway.app import create_app
from gateway.clock import FixedClock
from gateway.runtime import Runtime
from gateway.settings import load_settings

T = TypeVar("T")

NIGHT_RULE = """
rules:
  - id: opt
    type: opt_out
    lists: [global]
    unless: {category: transactional}
  - id: caps
    type: frequency_cap
    match: {category: marketing}
    limits: [{count: 2, per: 24h}]
  - id: quiet
    type: time_window
    match: {channel: sms, category: marketing}
    allow: {hours: "08:00-21:00"}
    action: defer
"""


@dataclass
class Gateway:
    """One in-process gateway: its HTTP client, clock and policies file."""

    client: TestClient
    clock: FixedClock
    rules: Path

    @property
    def runtime(self) -> Runtime:
        rt: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return rt

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await `fn(*args)` on the app's own event loop."""
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)

    def run_due(self) -> int:
        """One scheduler round at the clock's now."""
        return self.call(scheduler.run_due, self.runtime)

    def at(self, when: str) -> None:
        self.clock.set(datetime.fromisoformat(when))

    def send(self, **fields: Any) -> Any:
        return self.client.post("/v1/messages", json=sms(**fields))

    def fate(self, item_id: str) -> dict[str, Any]:
        answer = self.client.get(f"/v1/deferred/{item_id}")
        assert answer.status_code == 200, answer.text
        fate: dict[str, Any] = answer.json()
        return fate

    def reload(self, rules: str) -> None:
        self.rules.write_text(textwrap.dedent(rules).lstrip("\n"), encoding="utf-8")
        assert self.client.post("/v1/policies/reload").status_code == 200


Make = Callable[..., Gateway]


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Make]:
    made: list[TestClient] = []

    def make(rules: str = NIGHT_RULE, env: dict[str, str] | None = None) -> Gateway:
        n = len(made)
        folder = tmp_path / f"policies-{n}"
        folder.mkdir()
        path = folder / "rules.yaml"
        path.write_text(textwrap.dedent(rules).lstrip("\n"), encoding="utf-8")
        environ = {"GATEWAY_DATA_DIR": str(tmp_path / f"data-{n}")} | (env or {})
        settings = load_settings(None, environ, policies=folder)
        clock = FixedClock(datetime(2026, 6, 2, 15, 0, tzinfo=UTC))
        client = TestClient(create_app(settings, clock=clock, run_scheduler=False))
        client.__enter__()
        made.append(client)
        return Gateway(client, clock, path)

    yield make
    for client in made:
        client.__exit__(None, None, None)


@pytest.fixture
def gw(make_gateway: Make) -> Gateway:
    return make_gateway()


def sms(**fields: Any) -> dict[str, Any]:
    return {
        "channel": "sms",
        "to": "+12125550100",
        "body": "Sale",
        "category": "marketing",
    } | fields


def window_rule(
    allow: str = '{hours: "08:00-21:00"}', match: str = "{channel: sms}", **extra: str
) -> str:
    """A bundle of one deferring window rule; `extra` adds keys, written as YAML."""
    more = "".join(f"\n    {key}: {value}" for key, value in extra.items())
    return (
        "rules:\n"
        "  - id: window\n"
        "    type: time_window\n"
        f"    match: {match}\n"
        f"    allow: {allow}{more}\n"
        "    action: defer\n"
    )
