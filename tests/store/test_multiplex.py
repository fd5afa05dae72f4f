"""The multiplexed client behind `RedisStore.fetch` (gateway.store.multiplex),
against real Redis servers over real sockets: replies matched to their commands,
errors kept to their command, scripts loaded again, time-outs, broken and
restarted servers, AUTH, SELECT, unix sockets and TLS.

Each scenario runs under asyncio's own loop and under uvloop (the gateway's),
since the two transports differ in how they write and fail."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import uvloop
from redis.asyncio import ConnectionPool
from redis.credentials import UsernamePasswordCredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StoreUnavailable
from gateway.store.multiplex import Endpoint, Multiplexer
from gateway.store.redis import RedisStore
from tests.redis_support import (
    BOUND,
    REDIS_URL,
    RedisServer,
    RedisStores,
    delete_prefix,
    free_port,
    new_prefix,
    own_redis,
    require_redis_sync,
)

from .test_contract import ask, cap, peek, send

T = 1_780_000_000_000
Run = Callable[[Awaitable[Any]], Any]
runs = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


def multiplexer(url: str, *, timeout: float = 0.5, **options: Any) -> Multiplexer:
    endpoint = Endpoint.of(ConnectionPool.from_url(url, decode_responses=True, **options))
    assert endpoint is not None
    return Multiplexer(endpoint, timeout=timeout, retries=1)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh key prefix on the test Redis, deleted afterwards."""
    require_redis_sync()
    chosen = new_prefix()
    yield chosen
    delete_prefix(REDIS_URL, chosen)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis(tmp_path / "redis") as started:
        yield started


# -- replies -------------------------------------------------------------------


@runs
def test_concurrent_commands_each_get_their_own_reply_in_order(run: Run, prefix: str) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        mux = multiplexer(REDIS_URL)
        try:
            echoes = asyncio.gather(*(mux.execute("ECHO", f"m{i}") for i in range(500)))
            counts = asyncio.gather(*(mux.execute("INCR", prefix + "n") for _ in range(500)))
            return await asyncio.wait_for(asyncio.gather(echoes, counts), BOUND)
        finally:
            await mux.aclose()

    echoes, counts = run(scenario())
    assert echoes == [f"m{i}" for i in range(500)]
    assert counts == list(range(1, 501))  # sent, run and answered in the order asked


@runs
def test_an_error_reply_fails_only_its_own_command(run: Run, prefix: str) -> None:
    async def scenario() -> list[Any]:
        mux = multiplexer(REDIS_URL)
        key = prefix + "k"
        try:
            return await asyncio.gather(
                mux.execute("SET", key, "v"),
                mux.execute("HGET", key, "field"),  # the wrong type
                mux.execute("GET", key),
                mux.execute("NO-SUCH-COMMAND"),
                mux.execute("GET", key),
                return_exceptions=True,
            )
        finally:
            await mux.aclose()

    ok, wrong_type, value, unknown, again = run(scenario())
    assert (ok, value, again) == ("OK", "v", "v")
    assert isinstance(wrong_type, ResponseError) and "WRONGTYPE" in str(wrong_type)
    assert isinstance(unknown, ResponseError) and "unknown command" in str(unknown)


@runs
def test_a_caller_that_gives_up_does_not_shift_the_replies(run: Run, prefix: str) -> None:
    async def scenario() -> Any:
        mux = multiplexer(REDIS_URL)
        try:
            blocked = asyncio.ensure_future(mux.execute("BLPOP", prefix + "empty", "0.2"))
            await asyncio.sleep(0.05)
            blocked.cancel()  # its reply (nil, in 0.2 s) still comes, and is dropped
            return await asyncio.wait_for(mux.execute("ECHO", "mine"), BOUND)
        finally:
            await mux.aclose()

    assert run(scenario()) == "mine"


@runs
def test_a_script_flushed_from_the_server_is_loaded_again(run: Run, server: RedisServer) -> None:
    async def scenario() -> list[Any]:
        mux = multiplexer(server.url)
        script = mux.script("return {KEYS[1], ARGV[1], 7}")
        try:
            first = await script(keys=["k"], args=["a"])
            await mux.execute("SCRIPT", "FLUSH")
            second = await script(keys=["k"], args=[b"b"])
            return [first, second, await mux.execute("SCRIPT", "EXISTS", script.sha)]
        finally:
            await mux.aclose()

    assert run(scenario()) == [["k", "a", 7], ["k", "b", 7], [1]]
    client = redis.Redis.from_url(server.url)
    stats = client.info("commandstats")
    client.close()
    # Both the first call (a new server) and the one after the flush were
    # answered NOSCRIPT, loaded the script and ran it again.
    assert stats["cmdstat_evalsha"]["calls"] == 4
    assert stats["cmdstat_evalsha"]["failed_calls"] == 2
    assert stats["cmdstat_script|load"]["calls"] == 2


# -- time-outs -----------------------------------------------------------------


async def start_silent_server() -> tuple[asyncio.Server, list[asyncio.StreamReader]]:
    """A server that accepts connections and reads commands but never answers;
    and the readers of the connections it accepted."""
    accepted: list[asyncio.StreamReader] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)
        while await reader.read(4096):
            pass
        writer.close()

    return await asyncio.start_server(never_answer, "127.0.0.1", 0), accepted


@runs
def test_a_server_that_never_answers_times_out_every_pending_command(run: Run) -> None:
    async def scenario() -> None:
        silent, accepted = await start_silent_server()
        port = silent.sockets[0].getsockname()[1]
        mux = multiplexer(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        try:
            started = time.monotonic()
            failed = await asyncio.gather(
                *(mux.execute("ECHO", str(i)) for i in range(3)), return_exceptions=True
            )
            assert all(isinstance(exc, RedisTimeoutError) for exc in failed), failed
            # uvloop's timers have millisecond resolution: one may fire a
            # fraction of a millisecond early by time.monotonic().
            assert 0.2 - 0.002 <= time.monotonic() - started < 0.2 + 0.5
            # The connection was dropped (a late reply would go to the wrong
            # command): the next command opens another one, and times out too.
            with pytest.raises(RedisTimeoutError, match=r"Timeout reading from 127\.0\.0\.1"):
                await mux.execute("PING")
            assert len(accepted) == 2
            assert accepted[0].at_eof()
        finally:
            await mux.aclose()
            silent.close()
            await silent.wait_closed()

    run(scenario())


@runs
def test_a_paused_server_times_out_and_the_next_command_after_it_resumes_succeeds(
    run: Run, server: RedisServer
) -> None:
    async def scenario() -> None:
        mux = multiplexer(server.url, timeout=0.3)
        try:
            await mux.execute("SET", "k", "before")
            server.pause()
            try:
                started = time.monotonic()
                with pytest.raises(RedisTimeoutError):
                    await mux.execute("SET", "k", "during")
                assert time.monotonic() - started < 0.3 + 0.5
            finally:
                server.resume()
            assert await asyncio.wait_for(mux.execute("ECHO", "after"), BOUND) == "after"
            assert await mux.execute("GET", "k") in {"before", "during"}  # it may have run
        finally:
            await mux.aclose()

    run(scenario())


# -- broken connections -----------------------------------------------------------


@runs
def test_a_killed_server_fails_the_pending_commands_and_a_restarted_one_is_used(
    run: Run, server: RedisServer
) -> None:
    async def scenario() -> None:
        mux = multiplexer(server.url, timeout=5)
        script = mux.script("return ARGV[1]")
        try:
            assert await script(args=["one"]) == "one"
            waiting = asyncio.ensure_future(mux.execute("BLPOP", "nothing", "4"))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            with pytest.raises(RedisConnectionError, match="lost"):
                await waiting
            assert time.monotonic() - started < 2  # not the 5 s time-out
            with pytest.raises(RedisConnectionError, match="Error connecting"):
                await mux.execute("PING")  # nothing listens: fails at once

            await asyncio.to_thread(server.start)  # same port, empty
            assert await asyncio.wait_for(script(args=["two"]), BOUND) == "two"
        finally:
            await mux.aclose()

    run(scenario())


@runs
def test_a_server_restarted_while_the_connection_is_idle_costs_no_failed_command(
    run: Run, server: RedisServer
) -> None:
    async def scenario() -> None:
        mux = multiplexer(server.url)
        try:
            assert await mux.execute("ECHO", "before") == "before"
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            assert await asyncio.wait_for(mux.execute("ECHO", "after"), BOUND) == "after"
        finally:
            await mux.aclose()

    run(scenario())


@runs
@pytest.mark.parametrize("retries", [0, 1])
def test_a_command_whose_write_fails_is_sent_again_on_a_new_connection(
    run: Run, retries: int
) -> None:
    # The server resets the connection while the event loop is blocked, so the
    # connection still looks open: the next command is written to it, and the
    # write fails at once. It never left, so it is sent again, if allowed.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def serve_one() -> socket.socket:
        conn, _ = await asyncio.to_thread(listener.accept)
        assert b"PING" in await asyncio.to_thread(conn.recv, 1024)
        conn.sendall(b"+PONG\r\n")
        return conn

    async def scenario() -> None:
        endpoint = Endpoint.of(ConnectionPool.from_url(f"redis://127.0.0.1:{port}/0"))
        assert endpoint is not None
        mux = Multiplexer(endpoint, timeout=2, retries=retries)
        opened: list[socket.socket] = []
        try:
            reply, first = await asyncio.gather(mux.execute("PING"), serve_one())
            opened.append(first)
            assert reply == "PONG"
            first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            first.close()  # a reset
            time.sleep(0.05)  # blocking the loop on purpose: the reset arrives, unread
            if retries:
                reply, second = await asyncio.gather(mux.execute("PING"), serve_one())
                opened.append(second)
                assert reply == "PONG"
            else:
                with pytest.raises(RedisConnectionError, match="Error writing to 127"):
                    await mux.execute("PING")
        finally:
            await mux.aclose()
            for conn in opened:
                conn.close()

    try:
        run(scenario())
    finally:
        listener.close()


@runs
def test_closing_fails_what_is_pending_and_a_later_command_reconnects(
    run: Run, prefix: str
) -> None:
    async def scenario() -> None:
        mux = multiplexer(REDIS_URL, timeout=5)
        waiting = asyncio.ensure_future(mux.execute("BLPOP", prefix + "nothing", "4"))
        await asyncio.sleep(0.05)
        await mux.aclose()
        with pytest.raises(RedisConnectionError, match="closed by the client"):
            await waiting
        try:
            assert await mux.execute("ECHO", "again") == "again"
        finally:
            await mux.aclose()

    run(scenario())


# -- what the URL says -------------------------------------------------------------


@contextmanager
def redis_with(folder: Path, *options: str, ready: Callable[[], bool]) -> Iterator[None]:
    """A throwaway redis-server with `options`, once `ready()`; killed afterwards.
    Skipped when redis-server is missing or refuses the options (built without TLS)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["redis-server", "--save", "", "--appendonly", "no", "--dir", str(folder), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + BOUND
        while not ready():
            if process.poll() is not None:
                pytest.skip(f"redis-server refused {options}")
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=BOUND)


def accepts(address: tuple[str, int] | str) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(0.2)
        try:
            sock.connect(address)
        except OSError:
            return False
        return True


@runs
def test_the_password_and_the_database_in_the_url_are_used(run: Run, tmp_path: Path) -> None:
    port = free_port()
    options = ("--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret")
    with redis_with(tmp_path, *options, ready=lambda: accepts(("127.0.0.1", port))):

        async def scenario() -> None:
            for url in (
                f"redis://:s3cret@127.0.0.1:{port}/3",
                f"redis://default:s3cret@127.0.0.1:{port}/3",
            ):
                mux = multiplexer(url)
                try:
                    assert await mux.execute("SET", "k", url) == "OK"
                finally:
                    await mux.aclose()
            wrong = multiplexer(f"redis://:wrong@127.0.0.1:{port}/3")
            with pytest.raises(ResponseError, match="WRONGPASS"):
                await wrong.execute("PING")

        run(scenario())
        client = redis.Redis(port=port, password="s3cret", db=3, decode_responses=True)
        assert client.get("k") == f"redis://default:s3cret@127.0.0.1:{port}/3"
        client.close()


@runs
def test_a_unix_socket_url_is_used(run: Run, tmp_path: Path) -> None:
    path = str(tmp_path / "redis.sock")
    options = ("--port", "0", "--unixsocket", path, "--unixsocketperm", "700")
    with redis_with(tmp_path, *options, ready=lambda: accepts(path)):

        async def scenario() -> None:
            store = RedisStore(f"unix://{path}?db=2")
            try:
                assert store._multiplexer is not None
                assert (await send(store, ask(cap(5)), T, "s1")).counted
                assert (await peek(store, ask(cap(5)), T)).caps[0].count == 1
            finally:
                await store.close()

        run(scenario())


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@runs
def test_a_tls_url_is_used_and_its_certificate_checked(run: Run, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    options = (
        *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
        *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
    )
    url = f"rediss://127.0.0.1:{port}/0"
    with redis_with(tmp_path, *options, ready=lambda: accepts(("127.0.0.1", port))):

        async def scenario() -> None:
            # The options gateway.runtime.redis_options gives a verifying store.
            verify = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
            trusting = RedisStore(url, ssl_ca_certs=str(cert), **verify)
            untrusting = RedisStore(url, **verify)  # the system's CAs do not know ours
            try:
                assert trusting._multiplexer is not None
                assert (await send(trusting, ask(cap(5)), T, "s1")).counted
                with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                    await send(untrusting, ask(cap(5)), T, "s2")
            finally:
                await trusting.close()
                await untrusting.close()

        run(scenario())


# -- in the store ------------------------------------------------------------------


@runs
def test_concurrent_fetches_share_one_connection(run: Run, server: RedisServer) -> None:
    async def scenario() -> list[bool]:
        stores = RedisStores(server.url)
        store = stores.make()
        try:
            await store.load_scripts()
            sends = (send(store, ask(cap(50)), T, f"s{i}") for i in range(200))
            return [facts.counted for facts in await asyncio.gather(*sends)]
        finally:
            await stores.cleanup()

    client = redis.Redis.from_url(server.url)
    try:
        client.config_resetstat()
        counted = run(scenario())
        assert sum(counted) == 50
        stats = client.info("commandstats")
        assert (stats["cmdstat_evalsha"]["calls"], stats["cmdstat_evalsha"]["failed_calls"]) == (
            200,
            0,
        )
        # fetch's one connection, and redis-py's for loading the scripts and cleaning up
        assert client.info("stats")["total_connections_received"] == 3
    finally:
        client.close()


async def test_a_credential_provider_keeps_fetch_on_redis_py(prefix: str) -> None:
    store = RedisStore(
        REDIS_URL, prefix=prefix, credential_provider=UsernamePasswordCredentialProvider()
    )
    try:
        assert store._multiplexer is None
        assert (await send(store, ask(cap(5)), T, "s1")).counted
    finally:
        await store.close()
