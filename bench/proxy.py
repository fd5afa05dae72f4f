"""The bare pass-through proxy: the gateway's server stack and upstream client
with nothing in between, the yardstick for the full path.

`POST /v1/messages` forwards the body to the upstream with one shared aiohttp
session (configured like the gateway's) and returns its answer; `GET /healthz`
answers an empty 200. `python -m bench.proxy PORT UPSTREAM_URL [--gc-tune]`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.tuning import GcTuned


def create_app(upstream: str) -> Starlette:
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
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args(argv)
    app = create_app(args.upstream)
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
