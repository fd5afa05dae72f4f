"""A real local HTTP server standing in for a provider: it records what it
receives and answers what the test tells it to."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class StubUpstream:
    url: str = ""
    status: int = 201
    answer: dict[str, Any] = field(default_factory=lambda: {"sid": "SM123", "status": "queued"})
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)


def _handler(stub: StubUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            stub.received.append(
                {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            )
            if stub.delay:
                threading.Event().wait(stub.delay)
            data = json.dumps(stub.answer).encode()
            self.send_response(stub.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Upstream", "stub")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def stub_upstream() -> Iterator[StubUpstream]:
    stub = StubUpstream()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
