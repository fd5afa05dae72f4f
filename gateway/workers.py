"""`gateway serve --workers N`: N server processes, each with a listening
socket of its own on the same port (SO_REUSEPORT), and a supervisor that
starts them, restarts one that dies, and stops them all on SIGINT or SIGTERM.

Why not uvicorn's own `--workers`: its workers share one listening socket,
and whichever is awake first accepts. Senders keep their connections open,
so the first worker often took nearly all of them (94% in a `make bench`
run) while the others idled. With a socket each, the kernel spreads new
connections over the workers by a hash of their addresses.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any

STOP_TIMEOUT = 15.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other sockets may share (SO_REUSEPORT)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _worker(
    host: str, port: int, settings_json: str, options: dict[str, Any], ready: Event
) -> None:
    """One worker: its own socket, and uvicorn serving the gateway on it;
    `ready` is set once it serves."""
    import os

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                ready.set()

    _die_with_parent()
    os.environ["GATEWAY_SETTINGS_JSON"] = settings_json
    sock = listening_socket(host, port)
    config = uvicorn.Config("gateway.cli:app_from_env", factory=True, **options)
    Server(config).run(sockets=[sock])


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies, even by SIGKILL,
    so that no worker is left serving the port on its own."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class Supervisor:
    """Runs `count` workers serving the gateway of `settings_json` on
    (host, port); `options` go to each worker's uvicorn.Config."""

    def __init__(
        self,
        host: str,
        port: int,
        settings_json: str,
        count: int,
        options: dict[str, Any] | None = None,
    ) -> None:
        self._spawn = multiprocessing.get_context("spawn")
        # Held, bound but not listening, while the workers run: it keeps the
        # port (and picks it, for port 0), and takes no connections itself.
        self._reserved = listening_socket(host, port)
        self._args = (
            host,
            self._reserved.getsockname()[1],
            settings_json,
            {"log_level": "warning"} | (options or {}),
        )
        self._workers: list[tuple[BaseProcess, Event]] = []
        self._count = count
        self._stopping = False

    @property
    def port(self) -> int:
        return int(self._args[1])

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM (0), or until a worker fails to start (1)."""
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._workers = [self._start() for _ in range(self._count)]
            return self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._reserved.close()

    def _start(self) -> tuple[BaseProcess, Event]:
        ready = self._spawn.Event()
        process = self._spawn.Process(target=_worker, args=(*self._args, ready), daemon=False)
        process.start()
        return process, ready

    def _watch(self) -> int:
        while not self._stopping:
            wait([process.sentinel for process, _ in self._workers], timeout=0.5)
            for slot, (process, ready) in enumerate(self._workers):
                if process.is_alive() or self._stopping:
                    continue
                if not ready.is_set():
                    # It never served (a port taken, a broken bundle, no store):
                    # stop everything rather than restart it in a loop.
                    print(
                        f"gateway: worker {slot + 1} exited with {process.exitcode} before "
                        "it served; stopping",
                        file=sys.stderr,
                    )
                    return 1
                print(
                    f"gateway: worker {slot + 1} exited with {process.exitcode}; restarting it",
                    file=sys.stderr,
                )
                self._workers[slot] = self._start()
        return 0

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        for process, _ in self._workers:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()  # SIGTERM: uvicorn finishes what is in flight
        deadline = time.monotonic() + STOP_TIMEOUT
        for process, _ in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
