"""The pooled, keep-alive HTTP client for real upstreams (aiohttp: measured the
fastest Python client for this job), with its errors translated once, here."""

from __future__ import annotations

import time
from collections.abc import Iterable

import aiohttp
import orjson

from gateway.errors import UpstreamTimeout, UpstreamUnreachable
from gateway.upstream.base import Outbound, Reply

# Never forwarded: they describe one connection, not the message.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def hop_by_hop(connection: Iterable[str]) -> frozenset[str]:
    """The names not to pass on (lower case): HOP_BY_HOP, and those the
    values of the Connection header list, which are this connection's too
    (RFC 9110 7.6.1)."""
    listed = {token.strip().lower() for value in connection for token in value.split(",")}
    listed.discard("")
    return HOP_BY_HOP.union(listed) if listed else HOP_BY_HOP


class HttpUpstream:
    def __init__(self, connect_timeout: float = 2.0, read_timeout: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                # One session serves every sender: a cookie one provider answer
                # sets must never ride along on another sender's request (and
                # filtering the jar cost every request a few microseconds).
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def send(self, request: Outbound) -> Reply:
        dropped = hop_by_hop(v for k, v in request.headers if k.lower() == "connection")
        headers = [(k, v) for k, v in request.headers if k.lower() not in dropped]
        started = time.perf_counter()
        try:
            async with self._client().request(
                request.method,
                request.url,
                headers=headers,
                data=request.body,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                answered = hop_by_hop(response.headers.getall("connection", ()))
                pairs = tuple(
                    (k, v) for k, v in response.headers.items() if k.lower() not in answered
                )
                latency = (time.perf_counter() - started) * 1000
                # SendGrid answers with no body and names the message in a header.
                message_id = _message_id(body) or response.headers.get("x-message-id")
                return Reply(response.status, pairs, body, latency, message_id)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise UpstreamUnreachable(f"cannot connect to the upstream: {_described(exc)}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The request may have reached the upstream: never retried blindly.
            raise UpstreamTimeout(f"no answer from the upstream: {_described(exc)}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _described(exc: BaseException) -> str:
    """What went wrong, for the answer and the trail. Never the exception's
    repr: aiohttp's response errors carry the request they failed on, and
    with it the sender's credentials (an Authorization header)."""
    text = exc.message if isinstance(exc, aiohttp.ClientResponseError) else str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _message_id(body: bytes) -> str | None:
    """The provider's message id, where the answer is JSON that has one."""
    if not body.startswith(b"{"):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    for key in ("sid", "id", "name", "message_id"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, str):
            return value
    return None
