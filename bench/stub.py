"""The stub upstream: a raw HTTP/1.1 server that answers every request 201 with
a small JSON body, as fast as the event loop allows (uvloop when installed).

`python -m bench.stub PORT` serves on 127.0.0.1:PORT until stopped. It keeps
connections alive, reads bodies by Content-Length and answers pipelined
requests in order; it is a load target, not a general HTTP server.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

ANSWER = b'{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}'
RESPONSE = (
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(ANSWER)).encode() + b"\r\n"
    b"\r\n" + ANSWER
)


def request_size(buffer: bytes | bytearray) -> int | None:
    """The size of the first complete request in `buffer` (head and body), or
    None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    length = 0
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        start = at + len(b"\r\ncontent-length:")
        stop = head.find(b"\r\n", start)
        length = int(head[start : stop if stop >= 0 else len(head)])
    total = end + 4 + length
    return total if len(buffer) >= total else None


class StubProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        answers = 0
        while True:
            size = request_size(buffer)
            if size is None:
                break
            del buffer[:size]
            answers += 1
        if answers and self._transport is not None:
            self._transport.write(RESPONSE * answers)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StubProtocol, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str]) -> None:
    port = int(argv[0]) if argv else 8099
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve("127.0.0.1", port))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])
