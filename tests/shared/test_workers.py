"""`gateway serve --workers N` (gateway/workers.py): each worker listens on a
socket of its own, so the kernel spreads connections over all of them; a
worker that dies is restarted; SIGTERM stops them all; a port in use is one
clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from tests.conftest import REPO

from .conftest import BOUND, Launch, Shared, sms


def workers(supervisor: int) -> list[int]:
    """The worker processes of a supervisor (not multiprocessing's helpers)."""
    found = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split() if "spawn_main" in _cmdline(int(p))]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""  # gone meanwhile


def decisions_by_worker(data: Path) -> dict[str, int]:
    counts = {}
    for folder in sorted(data.glob("worker-*")):
        lines = [
            line
            for journal in (folder / "audit.journal").glob("*.jsonl")
            for line in journal.read_text(encoding="utf-8").splitlines()
        ]
        counts[folder.name] = sum(line.startswith('["d"') for line in lines)
    return counts


def test_connections_are_spread_over_the_workers(
    launch: Launch, shared: Shared, tmp_path: Path
) -> None:
    server = launch(shared, "--workers", "2")
    for i in range(24):
        with httpx.Client(timeout=BOUND) as client:  # a new connection each time
            sent = client.post(server.url + "/v1/messages", json=sms(to=f"+1212555{i:04d}"))
            assert sent.status_code == 201
    counts = decisions_by_worker(tmp_path / "data")
    # Hashed over 24 connections, both workers get some (all on one: 1 in 8 million).
    assert sorted(counts) == ["worker-1", "worker-2"]
    assert sum(counts.values()) == 24 and min(counts.values()) > 0, counts


def test_a_dead_worker_is_restarted_and_sigterm_stops_them_all(
    launch: Launch, shared: Shared
) -> None:
    server = launch(shared, "--workers", "2")
    first = workers(server.process.pid)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + BOUND
    while len(now := workers(server.process.pid)) < 2 or first[0] in now:
        assert time.monotonic() < deadline, now
        time.sleep(0.1)
    server.wait_ready()
    assert httpx.post(server.url + "/v1/messages", json=sms(), timeout=BOUND).status_code == 201
    assert "exited with -9; restarting it" in server.output()

    server.process.terminate()
    assert server.process.wait(BOUND) == 0
    for pid in now:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except (FileNotFoundError, ProcessLookupError):
        return "zombie"


def test_workers_leave_with_a_killed_supervisor(launch: Launch, shared: Shared) -> None:
    server = launch(shared, "--workers", "2")
    started = workers(server.process.pid)
    server.process.kill()  # no chance to stop them itself
    server.process.wait(BOUND)
    deadline = time.monotonic() + BOUND
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in started):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    try:
        httpx.get(server.url + "/healthz", timeout=2)
        raise AssertionError("something still serves the port")
    except httpx.TransportError:
        pass


def test_a_port_in_use_is_one_line(shared: Shared, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"GATEWAY_REDIS_URL": shared.url, "GATEWAY_REDIS_PREFIX": shared.prefix}
        serve = ["serve", "--workers", "2", "--port", str(port), "--policies", "policies"]
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *serve, "--data-dir", str(tmp_path / "data")],
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | env,
            capture_output=True,
            text=True,
            timeout=BOUND,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"gateway: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
