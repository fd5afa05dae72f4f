"""A killed gateway process loses nothing: opt-outs, counted sends, deferred
messages and decision records are all there after a restart."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2 as httpx

from tests.conftest import REPO
from tests.server import free_port, start

US = "+12125550100"


def send(url: str, **fields: object) -> httpx.Response:
    body = {"channel": "sms", "to": US, "body": "Sale", "category": "marketing"} | fields
    return httpx.post(url + "/v1/messages", json=body, timeout=10)


def policies(folder: Path) -> Path:
    """A cap of 2, and a window that is closed now and opens in two hours (UTC)."""
    opens = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0)
    hours = f"{opens:%H}:00-{(opens + timedelta(hours=1)):%H}:00"
    folder.mkdir()
    (folder / "rules.yaml").write_text(
        "rules:\n"
        "  - {id: opt, type: opt_out, lists: [global]}\n"
        "  - {id: cap, type: frequency_cap, limits: [{count: 2, per: 24h}]}\n"
        "  - {id: later, type: time_window, match: {tags: [later]},"
        f" allow: {{hours: '{hours}'}}, action: defer}}\n"
    )
    return folder


def test_state_and_records_survive_a_kill(tmp_path: Path) -> None:
    rules = str(policies(tmp_path / "p"))
    server = start(tmp_path / "data", "--policies", rules)
    try:
        assert httpx.put(server.url + "/v1/opt-outs/global/+12125550199").status_code == 201
        sent = [send(server.url) for _ in range(2)]
        assert [r.status_code for r in sent] == [201, 201]
        held = send(server.url, to="+12125550111", tags=["later"], recipient_timezone="UTC")
        assert held.status_code == 202
        server.kill()
        server = start(tmp_path / "data", "--policies", rules)
        assert httpx.get(server.url + "/v1/opt-outs/global/+12125550199").status_code == 200
        for answer in sent:
            record = httpx.get(server.url + f"/v1/decisions/{answer.json()['decision_id']}")
            assert record.json()["upstream"]["status"] == 201
        assert send(server.url).status_code == 429  # both earlier sends still count
        fate = httpx.get(server.url + f"/v1/deferred/{held.json()['decision_id']}").json()
        assert fate["status"] == "pending"
        assert fate["deliver_at"] == held.json()["deliver_at"]
    finally:
        server.stop()


def serve_and_fail(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `gateway serve` expecting it to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port()), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_second_process_on_the_same_folder_refuses_to_start(tmp_path: Path) -> None:
    server = start(tmp_path / "data")
    try:
        done = serve_and_fail("--policies", "policies", "--data-dir", str(tmp_path / "data"))
        assert done.returncode == 2
        assert f"the data folder {tmp_path / 'data'} is in use by gateway process" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        server.stop()


def test_a_broken_bundle_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.yaml").write_text("rules:\n  - id: a\n    type: opt_out\n")
    done = serve_and_fail("--policies", str(tmp_path / "p"), "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].endswith("a.yaml:2: a: lists: is required")


def test_refuses_an_open_address_without_keys(tmp_path: Path) -> None:
    done = serve_and_fail(
        "--policies", "policies", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0"
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no API keys" in done.stderr
