"""One shared Redis connection for the store's hot path: `RedisStore.fetch`.

Every message the gateway checks costs one EVALSHA of the fetch script. Through
redis-py each call takes a connection from the pool, its lock, packs the
command, parses the reply and gives the connection back: at 32 concurrent
requests that client side costs some 60-75 us of CPU per call (Redis itself
spends under 2 us), against a per-message budget of about 200 us. Here every
caller shares ONE connection instead: a command is packed by hiredis and
written behind whatever is already in flight (pipelined); its future joins a
FIFO; and the replies, which Redis sends in the order it read the commands,
resolve the FIFO in order. That costs about 13 us per call, all included.

Only the fetch script goes through here; every other command stays with
redis-py, whose pool also serves the rare command that is not hot.

The contract mirrors the store's (see `RedisStore`):

- The connection opens lazily, and again after it broke (Redis restarted):
  callers that need it at the same time share one attempt.
- A broken connection fails every pending command with `ConnectionError`.
  A command that was never written (the connection could not be opened, or
  broke before the command left) is sent again on a fresh connection, at once,
  up to `retries` times. A command that was written is never sent again, since
  it may have run. The connection is always being read, so one that the server
  closed (a restart) is seen closed at the event loop's next turn, and the
  next command opens a new one: unlike a pooled connection, it is not found
  dead only by the command written to it (unless that command went out in the
  very turn the close arrived in; it then fails like any command in flight).
- Every command has a reply time-out. When the oldest pending command has
  waited longer, the connection is dropped (any reply that came later would be
  matched to the wrong caller) and every pending command fails with
  `TimeoutError`.
- Errors are redis-py's (`ConnectionError`, `TimeoutError`, `ResponseError`
  and its `NoScriptError`, `InvalidResponse`), so that the store translates
  them as it translates redis-py's own.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    RedisSSLContext,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float

# hiredis's stub declares a one-tuple; it packs a command of any length.
_pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)

# hiredis answers `gets()` with this while a reply is incomplete; `False` could
# be a reply (RESP3), so it is told to use a value no reply can be.
_INCOMPLETE = object()


def _reply_error(message: str) -> ResponseError:
    """An error reply, which hiredis returns (it does not raise it)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _NotSent(RedisConnectionError):
    """The command never left: no connection could be opened, or it broke
    before the command was written. It did not run, so it may be sent again."""


# For callers that must tell "never sent" from "may have run" (a time-out);
# the class keeps its private name, so that errors still read ConnectionError.
NotSent = _NotSent


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: a TCP host and port (with TLS or without) or a
    unix socket; the credentials, the database, and how to decode replies."""

    name: str  # for error messages, like redis-py's
    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    tls: RedisSSLContext | None = None  # makes its SSLContext when first connecting
    username: str | None = None
    password: str | None = None
    db: int = 0
    encoding: str = "utf-8"
    errors: str = "strict"

    @classmethod
    def of(cls, pool: ConnectionPool) -> Endpoint | None:
        """The endpoint redis-py's `pool` connects to, or None when this client
        cannot do what the pool does (a credential provider, a connection class
        of another kind): the caller then keeps to redis-py.

        Read off a connection the pool makes but never opens, so that the URL,
        the keyword arguments and redis-py's defaults (the TLS options too)
        are merged exactly as redis-py merges them.
        """
        template = pool.connection_class(**pool.connection_kwargs)  # as `make_connection`
        kind = type(template)
        if template.credential_provider is not None:
            return None
        common: dict[str, Any] = {
            "username": template.username,
            "password": template.password,
            "db": int(template.db),
            "encoding": template.encoder.encoding,
            "errors": template.encoder.encoding_errors,
        }
        if kind is UnixDomainSocketConnection:
            path = cast(UnixDomainSocketConnection, template).path
            return cls(name=path, path=path, **common)
        if kind not in (Connection, SSLConnection):
            return None
        tcp = cast(Connection, template)
        tls = tcp.ssl_context if isinstance(tcp, SSLConnection) else None
        return cls(name=f"{tcp.host}:{tcp.port}", host=tcp.host, port=tcp.port, tls=tls, **common)


class _Link(asyncio.Protocol):
    """One connection: commands are written as they come, and each reply
    resolves the oldest pending command's future."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._name = endpoint.name
        self._timeout = timeout
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=_reply_error,
            encoding=endpoint.encoding,
            errors=endpoint.errors,
            notEnoughData=_INCOMPLETE,
        )
        # Each pending command's future and the time its reply is due by.
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        # The newest pending commands, packed but not yet written (`_flush`).
        self._unwritten: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.alive = False
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        """Queue one command; the returned future gets its reply, or fails with
        `_NotSent` when the connection broke before the command was written.

        A command to an idle connection is written at once. Behind commands in
        flight it waits for the end of this turn of the event loop, and goes
        out with the others queued meanwhile: one system call for all the
        callers a batch of replies woke, rather than one each (some 5 us of
        CPU per command), at the cost of up to one turn of latency while
        Redis is still busy with the commands ahead of it anyway.
        """
        if not self.alive:
            raise _NotSent(f"Connection to {self._name} is closed.")
        idle = not self._pending
        if not self._unwritten and not idle:
            self._loop.call_soon(self._flush)
        self._unwritten.append(_pack(tuple(args)))
        reply: asyncio.Future[Any] = self._loop.create_future()
        deadline = self._loop.time() + self._timeout
        self._pending.append((reply, deadline))
        # One timer per connection, not one per command: it wakes at the
        # oldest command's deadline (replies come in order, so that one is due
        # first) and, if that command was answered, sleeps until the next one's.
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._watch)
        if idle:
            self._flush()
        return reply

    def close(self) -> None:
        """Fail every pending command and drop the connection."""
        self._drop(RedisConnectionError, f"Connection to {self._name} closed by the client.")

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.alive = True

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not _INCOMPLETE:
                self._resolve(reply)
        except InvalidResponse as exc:  # from hiredis, or a reply nobody asked for
            self._drop(InvalidResponse, f"{exc} (from {self._name})")

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else "."
        self._fail(RedisConnectionError, f"Connection to {self._name} lost{reason}")
        if not self.closed.done():
            self.closed.set_result(None)

    # pause_writing and resume_writing stay no-ops: the write buffer may grow
    # past its high-water mark, but only as far as the reply time-out lets it.

    # -- the rest ----------------------------------------------------------

    def _flush(self) -> None:
        transport = self._transport
        if not self._unwritten or transport is None:  # failed meanwhile
            return
        if not transport.is_closing():
            transport.write(b"".join(self._unwritten))
        # A write that fails closes the transport before returning, having
        # sent nothing; a closing transport takes nothing.
        if transport.is_closing():
            self._drop(RedisConnectionError, f"Error writing to {self._name}.")
        self._unwritten.clear()

    def _resolve(self, reply: Any) -> None:
        if not self._pending:
            raise InvalidResponse("a reply that no command asked for")
        future, _ = self._pending.popleft()
        if future.done():  # its caller was cancelled; the reply is not wanted
            return
        if isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)

    def _watch(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        deadline = self._pending[0][1]
        if self._loop.time() < deadline:
            self._watchdog = self._loop.call_at(deadline, self._watch)
        else:
            self._drop(RedisTimeoutError, f"Timeout reading from {self._name}")

    def _drop(self, kind: type[Exception], message: str) -> None:
        """Fail every pending command and abort the connection: abort, not
        close, since a server that stopped reading would never take the rest
        of the write buffer."""
        self._fail(kind, message)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, kind: type[Exception], message: str) -> None:
        """Fail every pending command: with `kind`, or with `_NotSent` for
        those not written yet (the newest)."""
        self.alive = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        written = len(self._pending) - len(self._unwritten)
        self._unwritten.clear()
        for index in range(len(self._pending)):
            future, _ = self._pending.popleft()
            if not future.done():  # a new exception each: tracebacks differ
                sent = index < written
                future.set_exception(kind(message) if sent else _NotSent(message))


class Multiplexer:
    """Commands from every caller over one connection to `endpoint`.

    `timeout` (seconds) bounds the connect (with AUTH and SELECT) and each
    reply; `retries` is how many times a command that was never written is sent
    again on a fresh connection.
    """

    def __init__(self, endpoint: Endpoint, *, timeout: float, retries: int) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._retries = retries
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None

    async def execute(self, *args: Arg) -> Any:
        """Send one command; return its reply, decoded as text (an error reply
        is raised as `ResponseError`)."""
        retries = self._retries
        while True:
            try:
                link = self._link
                if link is None or not link.alive:
                    link = await self._connect()
                return await link.send(args)
            except _NotSent:
                # The command never ran, so a fresh connection may take it;
                # any other failure is final (a written command may have run).
                if retries <= 0:
                    raise
                retries -= 1

    def script(self, script: str) -> Script:
        """A Lua script to run by EVALSHA over this connection."""
        return Script(self, script)

    async def aclose(self) -> None:
        """Fail whatever is pending and close the connection. A later command
        opens a new one, as redis-py's clients do after `aclose`."""
        if self._connecting is not None:
            self._connecting.cancel()
            # Its end (and `_opened`) comes first: a connection it made anyway
            # is then `_link`, closed below.
            await asyncio.wait([self._connecting])
        link, self._link = self._link, None
        if link is not None:
            link.close()
            await link.closed

    async def _connect(self) -> _Link:
        """A new connection: one attempt, shared by every caller waiting for it
        (and shielded from any one caller's cancellation)."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._opened)
        return await asyncio.shield(self._connecting)

    def _opened(self, attempt: asyncio.Task[_Link]) -> None:
        # Runs before the waiting callers resume, so they find the new link.
        self._connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self._link = attempt.result()

    async def _open(self) -> _Link:
        """Connect, AUTH and SELECT within the time-out, with redis-py's errors."""
        name = self._endpoint.name
        try:
            async with asyncio.timeout(self._timeout):
                link = await self._dial()
                try:
                    await self._handshake(link)
                except BaseException:
                    link.close()
                    raise
        except TimeoutError as exc:  # the builtin one: asyncio's, or the socket's
            raise RedisTimeoutError(f"Timeout connecting to {name}.") from exc
        except (OSError, RedisConnectionError) as exc:  # refused, unreachable, TLS, lost
            raise _NotSent(f"Error connecting to {name}: {exc}") from exc
        return link

    async def _dial(self) -> _Link:
        loop = asyncio.get_running_loop()
        end = self._endpoint

        def link() -> _Link:
            return _Link(end, self._timeout)

        if end.path is not None:
            _, opened = await loop.create_unix_connection(link, end.path)
        else:
            # asyncio sets TCP_NODELAY itself; with TLS the server name is the
            # host, as with redis-py. A bad certificate file fails here, on
            # connect, as with redis-py, not when the store is made.
            context = end.tls.get() if end.tls is not None else None
            _, opened = await loop.create_connection(
                link,
                end.host,
                end.port,
                ssl=context,
                server_hostname=end.host if context is not None else None,
            )
        return opened

    async def _handshake(self, link: _Link) -> None:
        """AUTH and SELECT, each only when needed, as redis-py does: a plain
        connection costs no command of its own."""
        end = self._endpoint
        if end.password is not None:
            user = (end.username,) if end.username else ()
            await link.send(("AUTH", *user, end.password))
        if end.db:
            await link.send(("SELECT", end.db))


class Script:
    """A Lua script run by EVALSHA over a `Multiplexer`, called like redis-py's
    `AsyncScript`. A server that answers NOSCRIPT (flushed, restarted) is sent
    SCRIPT LOAD and the EVALSHA again, as `AsyncScript` does: the script did
    not run, so running it again is safe."""

    def __init__(self, multiplexer: Multiplexer, script: str) -> None:
        self._multiplexer = multiplexer
        self.script = script
        self.sha = hashlib.sha1(script.encode("utf-8")).hexdigest()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await self._multiplexer.execute(*command)
        except NoScriptError:
            await self._multiplexer.execute("SCRIPT", "LOAD", self.script)
            return await self._multiplexer.execute(*command)
