"""The bare pass-through proxy: the gateway's server stack and upstream client
with nothing in between, the yardstick for the full path.

`POST /v1/messages` forwards the body to the upstream with one shared aiohttp
session (configured like the gateway's) and returns its answer; `GET /healthz`
answers an empty 200. `python -m bench.proxy PORT UPSTREAM_URL [--gc-tune]`.

With `--redis URL --journal FOLDER` it is the ceiling instead: before
forwarding, each message makes one EVALSHA through the gateway's own Redis
connection (gateway/store/multiplex.py) and writes one decision-sized line
to a journal (gateway/audit/journal.py), and nothing else: no parsing, no
rules, no decision. PERFORMANCE.md measured this path at 0.62 of the bare
proxy; what the gateway may spend on everything else is the gap between the
two.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import uvicorn
from redis.asyncio import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.tuning import GcTuned
from gateway.audit.journal import Journal
from gateway.ids import new_id
from gateway.store.multiplex import Endpoint, Multiplexer

# A decision's worth of JSON: a trace of twenty rules, as in `make bench`'s bundle.
_RECORD: dict[str, object] = {
    "decision_id": "",
    "decision": "allow",
    "at": "2026-06-02T15:00:00.123Z",
    "policy_version": "sha256:" + "0" * 16,
    "route": "sms",
    "sender": "acme",
    "channel": "sms",
    "category": "transactional",
    "recipient": "0" * 64,
    "recipient_hint": "+1******4567",
    "reasons": [],
    "trace": [
        {"rule": f"rule-{i}", "type": "content_length", "result": "pass", "detail": {}}
        for i in range(20)
    ],
    "content": {"body": {"sha256": "0" * 64, "length": 120}},
}
_COUNT = "return redis.call('INCR', KEYS[1])"


class Ceiling:
    """The gateway's fixed costs per message: one Redis round trip, one journal line."""

    def __init__(self, redis_url: str, key: str, journal: Path) -> None:
        endpoint = Endpoint.of(ConnectionPool.from_url(redis_url, decode_responses=True))
        assert endpoint is not None
        self._count = Multiplexer(endpoint, timeout=2.0, retries=1).script(_COUNT)
        self._key = key
        self._journal = Journal(journal)

    async def before_forward(self) -> None:
        await self._count(keys=[self._key])
        at = int(time.time() * 1000)
        record = _RECORD | {"decision_id": new_id(at)}
        self._journal.write([b'["d",%d,%b]' % (at, orjson.dumps(record))])


def create_app(upstream: str, ceiling: Ceiling | None = None) -> Starlette:
    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=10.0),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        state["session"] = session
        try:
            yield
        finally:
            await session.close()

    async def forward(request: Request) -> Response:
        body = await request.body()
        if ceiling is not None:
            await ceiling.before_forward()
        async with state["session"].post(
            upstream, data=body, headers={"content-type": "application/json"}
        ) as answer:
            data = await answer.read()
            return Response(data, answer.status, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"", 200)

    return Starlette(
        routes=[
            Route("/v1/messages", forward, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy")
    parser.add_argument("port", type=int)
    parser.add_argument("upstream")
    parser.add_argument("--gc-tune", action="store_true")
    parser.add_argument("--redis", help="the ceiling: one EVALSHA per message on this Redis")
    parser.add_argument("--redis-key", default="bench:ceiling", help="the key it counts in")
    parser.add_argument("--journal", type=Path, help="... and one line in a journal here")
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args(argv)
    ceiling = (
        Ceiling(args.redis, args.redis_key, args.journal) if args.redis and args.journal else None
    )
    app = create_app(args.upstream, ceiling)
    uvicorn.run(
        GcTuned(app) if args.gc_tune else app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop=args.loop,
        http=args.http,
    )


if __name__ == "__main__":
    main()
