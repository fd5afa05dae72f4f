"""Start the benchmark's servers as child processes on loopback, wait until they
answer, and stop every one of them, whatever happens."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return 200 <= int(answer.status) < 300
    except OSError:
        return False


def child_env() -> dict[str, str]:
    """The environment for the servers: no GATEWAY_* overrides from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """One server in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops us in order
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to its process group (uvicorn's workers too), then SIGKILL."""
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait(5)
        finally:
            self._out.close()


class Processes:
    """The servers of one run; `stop_all` stops them in reverse order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._running: list[Process] = []

    def start(self, name: str, argv: Sequence[str]) -> Process:
        slug = "".join(c if c.isalnum() else "-" for c in name)
        process = Process(name, argv, self.folder / f"{slug}.log")
        self._running.append(process)
        return process

    def python(self, name: str, module: str, *args: str) -> Process:
        return self.start(name, [sys.executable, "-m", module, *args])

    def stop(self, process: Process) -> None:
        if process in self._running:
            self._running.remove(process)
        process.stop()

    def stop_all(self) -> None:
        while self._running:
            process = self._running.pop()
            with contextlib.suppress(Exception):
                process.stop()
