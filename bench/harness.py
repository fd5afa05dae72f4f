"""`python -m bench`: every scenario of PERFORMANCE.md in one run, one table.

Starts on loopback a stub upstream, a private Redis, a bare pass-through proxy
and the gateway (one process with the embedded store, one on Redis), drives
each with wrk, counts Redis commands per message, times the content checks,
and stops everything it started, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench import bundle, cpu, report, wrk
from bench import profile as profiling
from bench.processes import Process, Processes, free_port, http_ok, port_open
from bench.report import Figures, Run

_STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {text}", flush=True)


@dataclass(frozen=True)
class Options:
    duration: float = 6.0
    warmup: float = 1.0
    connections: int = 32
    threads: int = 1
    rate: float = 1000.0
    paced_connections: int = 16
    gc_tune: bool = True
    loop: str = "auto"
    http: str = "auto"
    workers2: bool = True
    postgres: bool = True  # the row of the trail in PostgreSQL, when one is reachable
    content: bool = True
    profile: Path | None = None
    json_out: Path | None = None
    counted_messages: int = 300
    busy_poll_us: int = 1000
    rounds: int = 3


def server_stack(loop: str, http: str) -> str:
    """What uvicorn's 'auto' picks on this install."""
    import uvicorn

    def has(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    if loop == "auto":
        loop = "uvloop" if has("uvloop") else "asyncio"
    if http == "auto":
        http = "httptools" if has("httptools") else "h11"
    return f"uvicorn {uvicorn.__version__}, loop {loop}, http {http}"


# -- Redis -----------------------------------------------------------------


@dataclass
class RedisTarget:
    url: str
    prefix: str
    private: bool


def start_redis(procs: Processes, folder: Path) -> RedisTarget:
    binary = shutil.which("redis-server")
    tag = f"bench{os.getpid()}x{random.randrange(1 << 30):x}:"
    if binary is None:
        say("redis-server not found: using 127.0.0.1:6379 with a private key prefix")
        return RedisTarget("redis://127.0.0.1:6379/0", tag, private=False)
    port = free_port()
    process = procs.start(
        "redis",
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(folder),
            "--loglevel", "warning",
        ],
    )  # fmt: skip
    process.wait_ready(lambda: port_open(port), timeout=15)
    say(f"private Redis on :{port} (no persistence)")
    return RedisTarget(f"redis://127.0.0.1:{port}/0", "gw:", private=True)


def clean_redis(target: RedisTarget) -> None:
    if target.private:
        return
    import redis

    client = redis.Redis.from_url(target.url)
    try:
        for key in client.scan_iter(match=target.prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


class RedisMonitor:
    """Every command clients send to Redis, from MONITOR, in a background thread.

    Commands that scripts run appear in MONITOR as client `lua`; they are not
    round trips and are left out. INFO commandstats cannot tell them apart.
    """

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._stop = threading.Event()
        self._lines: list[str] = []
        self._sock = socket.create_connection(self._address, timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        first = self._sock.recv(64)
        if not first.startswith(b"+OK"):
            raise RuntimeError(f"Redis refused MONITOR: {first!r}")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        self._sock.settimeout(0.2)
        pending = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *done, pending = pending.split(b"\r\n")
            self._lines += [line.decode("utf-8", "replace") for line in done]

    def stop(self) -> dict[str, int]:
        """Client commands seen, by name."""
        time.sleep(0.3)  # the last lines are on their way
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        return monitor_counts(self._lines)


def monitor_counts(lines: list[str]) -> dict[str, int]:
    """Commands by name from MONITOR lines like
    `+1700000000.1 [0 127.0.0.1:5000] "evalsha" "..."`, without script calls."""
    counts: dict[str, int] = {}
    for line in lines:
        found = _MONITOR_LINE.match(line)
        if not found or found["client"] == "lua":
            continue
        name = found["command"].lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


_MONITOR_LINE = re.compile(r'^\+[\d.]+ \[\d+ (?P<client>[^\]]+)\] "(?P<command>[^"]+)"')


def count_round_trips(gateway_port: int, redis_url: str, messages: int) -> tuple[float, str]:
    """Redis commands sent per allowed message, over `messages` sequential sends."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway_port, timeout=10)
    base = random.randrange(10**bundle.RECIPIENT_DIGITS)
    try:
        connection.request("POST", "/v1/messages", bundle.body(base), _JSON)
        connection.getresponse().read()  # warm: the pool has its connection
        monitor = RedisMonitor(redis_url)
        allowed = 0
        try:
            for i in range(1, messages + 1):
                connection.request("POST", "/v1/messages", bundle.body(base + i), _JSON)
                answer = connection.getresponse()
                answer.read()
                if answer.getheader("X-Gateway-Decision") == "allow" and answer.status < 300:
                    allowed += 1
        finally:
            calls = monitor.stop()
    finally:
        connection.close()
    detail = ", ".join(f"{k}={v}" for k, v in sorted(calls.items())) or "none"
    detail += f" over {allowed} allowed of {messages} messages"
    if allowed == 0:
        raise RuntimeError(f"no message was allowed while counting Redis commands ({detail})")
    return sum(calls.values()) / allowed, detail


_JSON = {"Content-Type": "application/json"}


# -- the servers -----------------------------------------------------------


@dataclass
class Servers:
    stub_url: str
    bare_port: int
    embedded_port: int
    redis_port: int
    redis: RedisTarget
    redis_gateway: Process
    embedded_gateway: Process
    config_folder: Path
    stub: Process
    bare: Process
    ceiling_port: int
    ceiling: Process


def start_gateway(
    procs: Processes,
    name: str,
    config: Path,
    port: int,
    options: Options,
    workers: int = 1,
) -> Process:
    args = [str(config), "--workers", str(workers), "--loop", options.loop, "--http", options.http]
    if options.gc_tune:
        args.append("--gc-tune")
    process = procs.python(name, "bench.serve", *args)
    return process


def start_servers(procs: Processes, folder: Path, options: Options) -> Servers:
    redis_target = start_redis(procs, folder)
    stub_port = free_port()
    stub = procs.python("stub upstream", "bench.stub", str(stub_port))
    stub_url = f"http://127.0.0.1:{stub_port}/v1/send"

    bare_port = free_port()
    proxy_args = [str(bare_port), stub_url, "--loop", options.loop, "--http", options.http]
    if options.gc_tune:
        proxy_args.append("--gc-tune")
    bare = procs.python("bare proxy", "bench.proxy", *proxy_args)
    ceiling_port = free_port()
    ceiling_args = [str(ceiling_port), *proxy_args[1:], "--redis", redis_target.url]
    ceiling_args += ["--redis-key", redis_target.prefix + "ceiling"]
    ceiling_args += ["--journal", str(folder / "ceiling-journal")]
    ceiling = procs.python("ceiling proxy", "bench.proxy", *ceiling_args)

    policies = bundle.write_policies(folder / "policies")
    say(f"policy bundle: {len(bundle.RULES)} rules, {bundle.TERM_COUNT:,} banned terms")
    embedded_port, redis_port = free_port(), free_port()
    embedded_config = bundle.write_config(
        folder / "embedded.yaml",
        port=embedded_port,
        policies=policies,
        data_dir=folder / "data-embedded",
        upstream=stub_url,
        busy_poll_us=options.busy_poll_us,
    )
    redis_config = bundle.write_config(
        folder / "redis.yaml",
        port=redis_port,
        policies=policies,
        data_dir=folder / "data-redis",
        upstream=stub_url,
        store=redis_target.url,
        redis_prefix=redis_target.prefix,
        busy_poll_us=options.busy_poll_us,
    )
    embedded = start_gateway(procs, "gateway (embedded)", embedded_config, embedded_port, options)
    on_redis = start_gateway(procs, "gateway (Redis)", redis_config, redis_port, options)

    stub.wait_ready(lambda: port_open(stub_port))
    say(f"stub upstream on :{stub_port}")
    bare.wait_ready(lambda: http_ok(f"http://127.0.0.1:{bare_port}/healthz"))
    say(f"bare proxy on :{bare_port}")
    ceiling.wait_ready(lambda: http_ok(f"http://127.0.0.1:{ceiling_port}/healthz"))
    say(f"ceiling proxy (bare + one EVALSHA + one journal line) on :{ceiling_port}")
    embedded.wait_ready(lambda: http_ok(f"http://127.0.0.1:{embedded_port}/healthz"))
    say(f"gateway, embedded store, on :{embedded_port}")
    on_redis.wait_ready(lambda: http_ok(f"http://127.0.0.1:{redis_port}/healthz"))
    say(f"gateway, Redis store, on :{redis_port}")
    return Servers(
        stub_url=stub_url,
        bare_port=bare_port,
        embedded_port=embedded_port,
        redis_port=redis_port,
        redis=redis_target,
        redis_gateway=on_redis,
        embedded_gateway=embedded,
        config_folder=folder,
        stub=stub,
        bare=bare,
        ceiling_port=ceiling_port,
        ceiling=ceiling,
    )


# -- load ------------------------------------------------------------------


class Loader:
    def __init__(self, folder: Path, options: Options) -> None:
        self.folder = folder
        self.options = options
        self._scripts: dict[tuple[wrk.Load, float], Path] = {}

    def script(self, load: wrk.Load, delay_mean_ms: float = 0.0) -> Path:
        key = (load, delay_mean_ms)
        if key not in self._scripts:
            path = self.folder / f"load{len(self._scripts)}.lua"
            path.write_text(wrk.lua_script(load, delay_mean_ms), encoding="utf-8")
            self._scripts[key] = path
        return self._scripts[key]

    def measure(
        self,
        name: str,
        url: str,
        load: wrk.Load,
        *,
        connections: int,
        warmup: bool = True,
        delay_mean_ms: float = 0.0,
        workers: int = 1,
        note: str = "",
        server: Process | None = None,
    ) -> Run:
        """One scenario; with `server`, also its processor time per request."""
        script = self.script(load, delay_mean_ms)
        threads = min(self.options.threads, connections)
        if warmup and self.options.warmup > 0:
            wrk.run(
                url,
                script,
                connections=connections,
                duration_s=self.options.warmup,
                threads=threads,
                start=random.randrange(10**load.digits),
            )
        before = cpu.sample(server.pid) if server is not None else None
        result = wrk.run(
            url,
            script,
            connections=connections,
            duration_s=self.options.duration,
            threads=threads,
            start=random.randrange(10**load.digits),
        )
        after = cpu.sample(server.pid) if server is not None else None
        used = cpu.per_request(before, after, result.requests) if before and after else None
        run = Run(
            connections=connections,
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            ok=result.ok,
            workers=workers,
            note=note,
            paced=delay_mean_ms > 0,
            cpu_us=used.own_us if used else None,
            cpu_sys_us=used.system_us if used else None,
            helpers_us=used.helpers_us if used else None,
        )
        flag = "" if result.ok else f"  ({result.errors} errors, {result.non2xx} non-2xx!)"
        spent = f"  cpu {run.cpu_us:5,.0f} us/req" if run.cpu_us is not None else ""
        say(
            f"  {name:<32} {run.rps:>9,.0f} req/s  p50 {run.p50_ms:6.2f} ms"
            f"  p99 {run.p99_ms:6.2f} ms{spent}{flag}"
        )
        return run


@dataclass(frozen=True)
class Scenario:
    """One row of the table: what `Loader.measure` is given."""

    name: str
    url: str
    load: wrk.Load
    how: dict[str, Any]  # connections, warmup, delay_mean_ms, workers
    server: Process | None = None


def measure_rounds(loader: Loader, scenarios: list[Scenario], rounds: int) -> dict[str, Run]:
    """Every scenario once per round, side by side, so that a slow minute of
    the machine touches them all alike; each figure is the median of its
    rounds (PERFORMANCE.md's figures are medians of three)."""
    taken: dict[str, list[Run]] = {s.name: [] for s in scenarios}
    for round_number in range(1, rounds + 1):
        if rounds > 1:
            say(f"  round {round_number} of {rounds}")
        for s in scenarios:
            taken[s.name].append(loader.measure(s.name, s.url, s.load, server=s.server, **s.how))
    return {name: report.median_run(runs) for name, runs in taken.items()}


# -- the run ---------------------------------------------------------------


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def workspace() -> Iterator[tuple[Path, Processes]]:
    folder = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    procs = Processes(folder)
    try:
        yield folder, procs
    finally:
        say("stopping everything this run started")
        procs.stop_all()
        shutil.rmtree(folder, ignore_errors=True)


def run(options: Options) -> Figures:
    if wrk.executable() is None:
        raise SystemExit("wrk is needed for the load: apt-get install -y wrk")
    _interrupt_on_sigterm()
    fig = Figures()
    stack = server_stack(options.loop, options.http)
    say(f"server stack: {stack}; gc tuned: {'yes' if options.gc_tune else 'no'}")
    with workspace() as (folder, procs):
        servers = start_servers(procs, folder, options)
        loader = Loader(folder, options)
        post = wrk.Load(
            "POST", "/v1/messages", bundle.body_template(), digits=bundle.RECIPIENT_DIGITS
        )
        direct = wrk.Load(
            "POST", "/v1/send", bundle.body_template(), digits=bundle.RECIPIENT_DIGITS
        )
        # Every text different (an order number in it): nothing learnt from
        # one message's text serves the next, unlike a campaign's.
        personal = wrk.Load(
            "POST",
            "/v1/messages",
            bundle.body_template(personal=True),
            digits=bundle.RECIPIENT_DIGITS,
        )
        check = wrk.Load(
            "POST", "/v1/check", bundle.body_template(), digits=bundle.RECIPIENT_DIGITS
        )
        empty = wrk.Load("GET", "/healthz")
        stub_url = servers.stub_url
        bare = f"http://127.0.0.1:{servers.bare_port}/v1/messages"
        ceiling = f"http://127.0.0.1:{servers.ceiling_port}/v1/messages"
        embedded = f"http://127.0.0.1:{servers.embedded_port}/v1/messages"
        on_redis = f"http://127.0.0.1:{servers.redis_port}"
        c = options.connections
        runs = fig.runs
        rounds = options.rounds

        say(f"saturation: {c} connections, {options.duration:g} s each after {options.warmup:g} s")
        gateway = servers.redis_gateway
        saturated = {"connections": c}
        runs |= measure_rounds(
            loader,
            [
                Scenario(report.DIRECT, stub_url, direct, saturated, servers.stub),
                Scenario(report.BARE, bare, post, saturated, servers.bare),
                Scenario(report.CEILING, ceiling, post, saturated, servers.ceiling),
                Scenario(report.FULL_EMBEDDED, embedded, post, saturated, servers.embedded_gateway),
                Scenario(report.FULL_REDIS, on_redis + "/v1/messages", post, saturated, gateway),
                Scenario(
                    report.FULL_REDIS_PERSONAL,
                    on_redis + "/v1/messages",
                    personal,
                    saturated,
                    gateway,
                ),
                Scenario(report.CHECK, on_redis + "/v1/check", check, saturated, gateway),
                Scenario(report.EMPTY, on_redis + "/healthz", empty, saturated, gateway),
            ],
            rounds,
        )
        # The embedded gateway is done: its idle process would only take memory.
        procs.stop(servers.embedded_gateway)
        procs.stop(servers.ceiling)

        def latency(names: tuple[str, str, str], how: dict[str, Any]) -> dict[str, Run]:
            """The direct send, the bare proxy and the full path, loaded alike."""
            paths = ((stub_url, direct), (bare, post), (on_redis + "/v1/messages", post))
            pairs = zip(names, paths, strict=True)
            group = [Scenario(name, url, load, how) for name, (url, load) in pairs]
            return measure_rounds(loader, group, rounds)

        say("added latency: one connection")
        one = {"connections": 1, "warmup": False}
        runs |= latency((report.DIRECT_C1, report.BARE_C1, report.FULL_C1), one)

        delay = options.paced_connections * 1000.0 / options.rate
        say(
            f"added latency: ~{options.rate:,.0f} req/s offered ({options.paced_connections}"
            f" connections, each pausing {delay:g} ms on average, exponentially distributed)"
        )
        paced = {"connections": options.paced_connections, "warmup": False, "delay_mean_ms": delay}
        runs |= latency((report.DIRECT_PACED, report.BARE_PACED, report.FULL_PACED), paced)

        say(f"Redis commands per message: {options.counted_messages} sequential sends")
        per_message, detail = count_round_trips(
            servers.redis_port, servers.redis.url, options.counted_messages
        )
        fig.redis_calls_per_message, fig.redis_calls_detail = per_message, detail
        say(f"  {per_message:.2f} per allowed message ({detail})")

        if options.profile is not None:
            profile_gateway(loader, servers, post, options)

        procs.stop(servers.redis_gateway)
        if options.workers2:
            port = free_port()
            config = bundle.write_config(
                folder / "redis-2w.yaml",
                port=port,
                policies=folder / "policies",
                data_dir=folder / "data-redis-2w",
                upstream=servers.stub_url,
                store=servers.redis.url,
                redis_prefix=servers.redis.prefix,
                busy_poll_us=options.busy_poll_us,
            )
            two = start_gateway(procs, "gateway (Redis, 2 workers)", config, port, options, 2)
            two.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"))
            # One worker answering is not both: connections opened while the
            # other still loads the bundle would all go to the first one.
            two.wait_ready(lambda: _workers_serving(folder / "data-redis-2w") == 2)
            say(f"scale-out: gateway with 2 workers on :{port}")
            scaled = measure_rounds(
                loader,
                [
                    Scenario(
                        report.FULL_REDIS_2W,
                        f"http://127.0.0.1:{port}/v1/messages",
                        post,
                        {"connections": c, "workers": 2},
                    )
                ],
                rounds,
            )[report.FULL_REDIS_2W]
            runs[report.FULL_REDIS_2W] = replace(scaled, note=_share_note(folder / "data-redis-2w"))
        if options.postgres:
            runs |= measure_postgres_trail(procs, loader, servers, post, options)
        clean_redis(servers.redis)

    if options.content:
        say("content checks: 10, 1,000 and 10,000 terms (bench.content)")
        from bench import content

        fig.content_rows = content.run(print_table=False)
    return fig


def measure_postgres_trail(
    procs: Processes, loader: Loader, servers: Servers, post: wrk.Load, options: Options
) -> dict[str, Run]:
    """The Redis gateway with its trail in PostgreSQL (audit.url): a group
    commit before each send instead of a journal line."""
    from bench import postgres

    why = postgres.unreachable()
    if why is not None:
        say(f"PostgreSQL trail row skipped: {why}")
        return {}
    table, port = postgres.new_table(), free_port()
    config = bundle.write_config(
        loader.folder / "redis-pg.yaml",
        port=port,
        policies=loader.folder / "policies",
        data_dir=loader.folder / "data-redis-pg",
        upstream=servers.stub_url,
        store=servers.redis.url,
        redis_prefix=servers.redis.prefix,
        busy_poll_us=options.busy_poll_us,
        audit_url=postgres.URL,
        audit_table=table,
    )
    gateway = start_gateway(procs, "gateway (Redis, PostgreSQL trail)", config, port, options)
    try:
        gateway.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"))
        say(f"gateway, Redis store, trail in PostgreSQL table {table}, on :{port}")
        url = f"http://127.0.0.1:{port}/v1/messages"
        how = {"connections": options.connections}
        scenario = Scenario(report.FULL_REDIS_PG, url, post, how, gateway)
        return measure_rounds(loader, [scenario], options.rounds)
    finally:
        procs.stop(gateway)
        postgres.drop(table)


def _workers_serving(data_dir: Path) -> int:
    """Workers whose trail is open: a worker opens it as the last step of its
    start-up, just before it takes connections."""
    return len(list(data_dir.glob("worker-*/audit.journal")))


def _share_note(data_dir: Path) -> str:
    """How the decisions were shared between the workers (the decisions in
    each one's journal), and how far behind each one's index was left."""
    counts = []
    for journal in sorted(data_dir.glob("worker-*/audit.journal")):
        decisions = 0
        for part in journal.glob("*.jsonl"):
            with part.open("rb") as lines:
                decisions += sum(line.startswith(b'["d"') for line in lines)
        counts.append(decisions)
    total = sum(counts)
    if len(counts) < 2 or total == 0:
        return ""
    note = "split " + "/".join(f"{n / total:.0%}" for n in counts)
    behind = [_index_behind(worker) for worker in sorted(data_dir.glob("worker-*"))]
    if None not in behind:
        note += ", index behind " + "/".join(f"{b / 1e6:.1f}" for b in behind if b is not None)
        note += " MB"
    return note


def _index_behind(worker: Path) -> int | None:
    """Journal bytes a worker's trail index has not taken in yet: what its
    indexer still has to do when the load stops (the gateway fails closed
    once it is 256 MB). None when the index cannot be read."""
    try:
        uri = f"file:{worker / 'audit.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            number, offset = db.execute("SELECT file, offset FROM journal_position").fetchone()
    except (sqlite3.Error, TypeError):
        return None
    behind = 0
    for part in (worker / "audit.journal").glob("*.jsonl"):
        if part.stem.isdigit() and int(part.stem) >= number:
            behind += part.stat().st_size - (offset if int(part.stem) == number else 0)
    return max(0, behind)


def profile_gateway(loader: Loader, servers: Servers, post: wrk.Load, options: Options) -> None:
    assert options.profile is not None
    if profiling.py_spy() is None:
        say("profile skipped: py-spy is not installed (pip install py-spy)")
        return
    seconds = max(options.duration, 5.0)
    say(f"profile: py-spy on the Redis gateway (pid {servers.redis_gateway.pid}) for {seconds:g} s")
    recorder = profiling.record(servers.redis_gateway.pid, seconds, options.profile)
    time.sleep(0.5)
    url = f"http://127.0.0.1:{servers.redis_port}/v1/messages"
    script = loader.script(post)
    wrk.run(
        url,
        script,
        connections=options.connections,
        duration_s=seconds + 1,
        threads=loader.options.threads,
        start=random.randrange(10**post.digits),
    )
    _, err = recorder.communicate(timeout=60)
    if recorder.returncode != 0 or not options.profile.exists():
        say(f"profile failed: {err.decode(errors='replace').strip()[-300:]}")
        return
    print(profiling.summary(profiling.parse_raw(options.profile.read_text(encoding="utf-8"))))
    say(f"raw stacks in {options.profile} (collapsed format: flamegraph.pl, speedscope)")


def write_json(fig: Figures, path: Path, stack: str, options: Options) -> None:
    data = {
        "server_stack": stack,
        "gc_tuned": options.gc_tune,
        "busy_poll_us": options.busy_poll_us,
        "duration_s": options.duration,
        "runs": {name: asdict(run) for name, run in fig.runs.items()},
        "gates": [asdict(g) for g in report.gates(fig)],
        "redis_calls_per_message": fig.redis_calls_per_message,
        "redis_calls_detail": fig.redis_calls_detail,
        "content": fig.content_rows,
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="The gateway's benchmark: one run, one table."
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered req/s, paced runs")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of every scenario; each figure the median"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round of 1 s runs, no warm-up, no 2 workers"
    )
    parser.add_argument(
        "--no-gc-tune",
        dest="gc_tune",
        action="store_false",
        help="leave the collector as Python sets it (gateway serve tunes it: gc.freeze + gen-0)",
    )
    parser.add_argument("--loop", default="auto", help="uvicorn --loop for proxy and gateway")
    parser.add_argument("--http", default="auto", help="uvicorn --http for proxy and gateway")
    parser.add_argument(
        "--busy-poll-us",
        type=int,
        default=1000,
        help="the gateway's busy_poll_us setting (0: off; the bare proxy never polls)",
    )
    parser.add_argument("--no-workers2", action="store_true", help="skip the 2-worker row")
    parser.add_argument("--no-content", action="store_true", help="skip the content checks")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL trail row")
    parser.add_argument("--profile", type=Path, help="py-spy the full path into this file")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    return Options(
        duration=1.0 if quick else args.duration,
        warmup=0.0 if quick else args.warmup,
        connections=args.connections,
        threads=args.threads,
        rate=args.rate,
        gc_tune=args.gc_tune,
        loop=args.loop,
        http=args.http,
        workers2=not (quick or args.no_workers2),
        postgres=not args.no_postgres,
        content=not (quick or args.no_content),
        profile=args.profile,
        json_out=args.json,
        counted_messages=50 if quick else 300,
        busy_poll_us=args.busy_poll_us,
        rounds=1 if quick else max(1, args.rounds),
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        fig = run(options)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        return 1
    stack = server_stack(options.loop, options.http)
    title = (
        f"gateway benchmark: {os.cpu_count()} cores, {stack}, gc tuned "
        f"{'yes' if options.gc_tune else 'no'}, gateway busy poll "
        f"{f'{options.busy_poll_us} us' if options.busy_poll_us else 'off'}, "
        f"{options.duration:g} s per run"
        + (f", median of {options.rounds} rounds" if options.rounds > 1 else "")
    )
    print()
    print(report.render(fig, title))
    if options.json_out is not None:
        write_json(fig, options.json_out, stack, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
