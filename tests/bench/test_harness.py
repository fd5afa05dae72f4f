"""The benchmark harness's pieces, without load: parsers, gates, the bundle, and
starting and stopping the stub and the bare proxy. Nothing here times anything."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from bench import bundle, cpu, harness, report, wrk
from bench import profile as profiling
from bench.processes import Processes, free_port, http_ok, port_open
from bench.report import Figures, Run
from bench.stub import RESPONSE, request_size
from gateway.audit import index
from gateway.cli import main as gateway_main
from gateway.policy.loader import load_bundle
from tests.redis_support import REDIS_URL, require_redis_sync

WRK_OUTPUT = """Running 6s test @ http://127.0.0.1:8080/v1/messages
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.01ms  20.11ms   90.00%
  40000 requests in 6.00s, 9.00MB read
Requests/sec:   6666.67
BENCH requests=40000 duration_us=6000000 bytes=9000000 connect=0 read=0 write=0 status=2 \
timeout=0 mean_us=4100.5 p50_us=3900 p90_us=5000 p99_us=8200 p999_us=15000 max_us=20110
"""


def test_wrk_result_line_is_parsed() -> None:
    result = wrk.parse(WRK_OUTPUT)
    assert result.requests == 40000
    assert result.rps == pytest.approx(6666.67, rel=1e-3)
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (3.9, 8.2, 20.11)
    assert result.non2xx == 2 and result.errors == 0
    assert not result.ok


def test_wrk_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no result line"):
        wrk.parse("wrk: connection refused\n")


def test_lua_script_builds_bodies_from_the_template() -> None:
    load = wrk.Load("POST", "/v1/messages", bundle.body_template(), digits=5)
    script = wrk.lua_script(load, delay_mean_ms=16)
    prefix, suffix = bundle.body_template().split("@N@")
    assert f"local parts = {{ [==[{prefix}]==], [==[{suffix}]==] }}" in script
    personal = bundle.body_template(personal=True)
    assert personal.count("@N@") == 2
    assert personal.replace("#@N@", "20% off") == bundle.body_template()
    assert "[==[" + "]==], [==[".join(personal.split("@N@")) + "]==]" in wrk.lua_script(
        wrk.Load("POST", "/v1/messages", personal)
    )
    assert "function delay()" in script and "local delay_mean_ms = 16.0" in script
    assert "function done(summary, latency, requests)" in script
    assert 'headers["Content-Type"] = "application/json"' in script
    assert "function delay()" in wrk.lua_script(wrk.Load("GET", "/healthz"))  # defined, unused
    assert "local delay_mean_ms = 0.0" in wrk.lua_script(wrk.Load("GET", "/healthz"))
    with pytest.raises(ValueError, match="@N@"):
        wrk.lua_script(wrk.Load("POST", "/", '{"to": "fixed"}'))


def _figures(**overrides: float) -> Figures:
    fig = Figures()
    values = {
        "direct": 40000.0,
        "bare": 8000.0,
        "full": 5000.0,
        "check": 9000.0,
        "empty": 30000.0,
    } | overrides
    fig.runs = {
        report.DIRECT: Run(32, values["direct"], 0.5, 1.5),
        report.BARE: Run(32, values["bare"], 3.0, 6.0),
        report.FULL_REDIS: Run(32, values["full"], 5.0, 9.0),
        report.CHECK: Run(32, values["check"], 3.0, 6.0),
        report.EMPTY: Run(32, values["empty"], 1.0, 2.0),
        report.FULL_REDIS_2W: Run(32, 9000.0, 3.0, 7.0, workers=2),
        report.DIRECT_C1: Run(1, 20000.0, 0.05, 0.10),
        report.FULL_C1: Run(1, 3000.0, 0.40, 0.90),
        report.DIRECT_PACED: Run(16, 990.0, 0.10, 0.30),
        report.FULL_PACED: Run(16, 950.0, 1.50, 4.00),
    }
    fig.redis_calls_per_message = 1.0
    fig.content_rows = [
        {"check": "normalize+match en, no match", "terms": 10_000, "chars": 1000,
         "utf8_bytes": 1000, "us": 40.0},
        {"check": "normalize+match en, match at end", "terms": 10_000, "chars": 1000,
         "utf8_bytes": 1000, "us": 45.0},
        {"check": "normalize+match zh, no match", "terms": 10_000, "chars": 341,
         "utf8_bytes": 1023, "us": 50.0},
        {"check": "normalize+match zh, match at end", "terms": 10_000, "chars": 341,
         "utf8_bytes": 1023, "us": 60.0},
        {"check": "normalize+match zh, no match", "terms": 10_000, "chars": 1000,
         "utf8_bytes": 3000, "us": 500.0},
    ]  # fmt: skip
    return fig


def test_gates_hold_and_fail_on_their_thresholds() -> None:
    verdicts = {g.figure: g for g in report.gates(_figures())}
    assert verdicts["full path (Redis) / bare proxy, req/s"].measured == "0.62"
    assert all(g.holds for g in verdicts.values()), [g for g in verdicts.values() if not g.holds]
    # The zh 1,000-character row is 3 KB: not a 1 KB figure.
    assert verdicts["content check, 10,000 terms, 1 KB, us"].measured == "60.0"
    assert verdicts["added latency one connection, p50 ms"].measured == "+0.35"

    failing = {g.figure: g for g in report.gates(_figures(full=4000.0, check=6000.0))}
    assert failing["full path (Redis) / bare proxy, req/s"].holds is False
    assert failing["/v1/check / empty endpoint, req/s"].holds is False
    assert failing["full path per worker, req/s"].holds is True  # 4,000 is the gate itself


def test_gates_not_measured_are_said_so() -> None:
    gates = report.gates(Figures())
    assert {g.holds for g in gates} == {None}
    assert {g.measured for g in gates} == {"n/a"}


def test_one_table_with_every_scenario_gate_and_content_row() -> None:
    fig = _figures()
    fig.runs[report.BARE] = Run(32, 8000.0, 3.0, 6.0, ok=False)
    text = report.render(fig, "title")
    for name in fig.runs:
        assert name in text
    for gate in report.gates(fig):
        assert gate.figure in text
    assert "NOT ALL 2xx" in text
    assert "4,500" in text  # the 2-worker row per worker
    assert "40.0 / 45.0" in text and "50.0 / 60.0" in text


def test_monitor_lines_count_client_commands_not_script_calls() -> None:
    lines = [
        '+1700000000.000001 [0 127.0.0.1:50000] "evalsha" "abc" "2" "gw:optout:{x}"',
        '+1700000000.000002 [0 lua] "hexists" "gw:optout:{x}" "global"',
        '+1700000000.000003 [0 lua] "zadd" "gw:cap:{x}:1" "1" "id"',
        '+1700000000.000004 [0 unix:/tmp/redis.sock] "EVALSHA" "abc" "0"',
        "OK",
    ]
    assert harness.monitor_counts(lines) == {"evalsha": 2}


RAW_STACKS = """\
process 1:"python";<module> (bench/serve.py:5);run (asyncio/runners.py:118);\
submit (/work/gateway/service.py:90);_decide (/work/gateway/service.py:110);\
fetch (/x/site-packages/redis/asyncio/client.py:600) 30
process 1:"python";<module> (bench/serve.py:5);run (asyncio/runners.py:118);\
submit (/work/gateway/service.py:90);dumps (/usr/lib/python3.11/json/__init__.py:231) 10
"""


def test_profile_shares_per_function_and_package() -> None:
    prof = profiling.parse_raw(RAW_STACKS)
    assert prof.samples == 40
    assert prof.self_samples["fetch (redis/asyncio/client.py)"] == 30
    assert prof.total_samples["submit (gateway/service.py)"] == 40
    assert prof.packages["redis"] == 30 and prof.packages["stdlib:json"] == 10
    summary = profiling.summary(prof)
    assert "75.0%  redis" in summary and "100.0%  submit (gateway/service.py)" in summary


def test_the_bundle_loads_and_allows_the_benchmark_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = bundle.write_policies(tmp_path / "policies", term_count=200)
    assert len(load_bundle(policies, []).rules) == len(bundle.RULES) >= 20
    message = bundle.body(12345).decode()
    assert json.loads(message)["to"] == "+12122012345"
    personal = bundle.body(12345, personal=True).decode()
    assert "#12345" in json.loads(personal)["body"]
    monkeypatch.setattr("sys.stdin", io.StringIO(message + "\n" + personal + "\n"))
    assert gateway_main(["check", "--policies", str(policies), "-"]) == 0
    for line in capsys.readouterr().out.splitlines():
        decision = json.loads(line)
        assert decision["decision"] == "allow", decision
        assert not [t for t in decision["trace"] if t.get("result") == "fail"]


def test_stub_reads_pipelined_requests_by_length() -> None:
    one = b"POST /v1/send HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    assert request_size(one) == len(one)
    assert request_size(one[:-1]) is None
    assert request_size(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + one) == 27
    assert RESPONSE.startswith(b"HTTP/1.1 201 ")


def _send_three_through(proxy_port: int) -> None:
    """Three messages on one kept-alive connection, each answered by the stub."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=5)
    try:
        for number in range(3):
            connection.request(
                "POST", "/v1/messages", bundle.body(number), {"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            assert answer.status == 201
            assert json.loads(answer.read())["status"] == "queued"
    finally:
        connection.close()


def test_stub_and_bare_proxy_start_answer_and_stop(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        stub_port, proxy_port = free_port(), free_port()
        stub = procs.python("stub", "bench.stub", str(stub_port))
        proxy = procs.python(
            "proxy", "bench.proxy", str(proxy_port), f"http://127.0.0.1:{stub_port}/v1/send"
        )
        stub.wait_ready(lambda: port_open(stub_port), timeout=15)
        proxy.wait_ready(lambda: http_ok(f"http://127.0.0.1:{proxy_port}/healthz"), timeout=15)
        _send_three_through(proxy_port)
    finally:
        procs.stop_all()
    assert stub.popen.poll() is not None and proxy.popen.poll() is not None
    assert not port_open(stub_port) and not port_open(proxy_port)


def test_the_ceiling_proxy_counts_in_redis_and_journals_each_message(tmp_path: Path) -> None:
    require_redis_sync()
    key = f"test-ceiling-{os.getpid()}-{time.monotonic_ns()}"
    client = redis.Redis.from_url(REDIS_URL)
    procs = Processes(tmp_path)
    try:
        stub_port, proxy_port = free_port(), free_port()
        stub = procs.python("stub", "bench.stub", str(stub_port))
        proxy = procs.python(
            "ceiling",
            "bench.proxy",
            str(proxy_port),
            f"http://127.0.0.1:{stub_port}/v1/send",
            *("--redis", REDIS_URL, "--redis-key", key, "--journal", str(tmp_path / "j")),
        )
        stub.wait_ready(lambda: port_open(stub_port), timeout=15)
        proxy.wait_ready(lambda: http_ok(f"http://127.0.0.1:{proxy_port}/healthz"), timeout=15)
        _send_three_through(proxy_port)
        assert client.get(key) == b"3"  # one EVALSHA each
        lines = b"".join(p.read_bytes() for p in (tmp_path / "j").glob("*.jsonl")).splitlines()
        entries = [json.loads(line) for line in lines]  # one whole line each
        assert [entry[0] for entry in entries] == ["d", "d", "d"]
        assert len({entry[2]["decision_id"] for entry in entries}) == 3
        assert len(entries[0][2]["trace"]) == 20  # a decision's worth of JSON
    finally:
        procs.stop_all()
        client.delete(key)
        client.close()


def test_quick_options() -> None:
    options = harness.parse_args(["--quick"])
    assert (options.duration, options.warmup, options.workers2, options.content) == (
        1.0,
        0.0,
        False,
        False,
    )
    assert harness.parse_args([]).duration >= 5
    assert options.rounds == 1
    assert harness.parse_args([]).rounds == 3
    assert harness.parse_args(["--rounds", "5"]).rounds == 5


def test_each_figure_is_the_median_of_its_rounds() -> None:
    rounds = [
        Run(32, 3000.0, 10.0, 14.0, cpu_us=300.0, cpu_sys_us=40.0),
        Run(32, 3300.0, 9.0, 20.0, cpu_us=320.0, cpu_sys_us=50.0),
        Run(32, 3100.0, 9.5, 12.0, cpu_us=310.0, cpu_sys_us=45.0),
    ]
    run = report.median_run(rounds)
    assert (run.rps, run.p50_ms, run.p99_ms) == (3100.0, 9.5, 14.0)
    assert (run.cpu_us, run.cpu_sys_us, run.ok) == (310.0, 45.0, True)
    assert not report.median_run([*rounds[:2], replace(rounds[2], ok=False)]).ok
    assert report.median_run(rounds[:1]) is rounds[0]


def test_rounds_take_every_scenario_in_turn(tmp_path: Path) -> None:
    taken: list[str] = []
    figures = {"a": iter([100.0, 300.0, 200.0]), "b": iter([10.0, 30.0, 20.0])}

    class Loader:
        def measure(self, name: str, url: str, load: wrk.Load, **how: Any) -> Run:
            taken.append(name)
            return Run(how["connections"], next(figures[name]), 1.0, 2.0)

    load = wrk.Load("GET", "/healthz")
    runs = harness.measure_rounds(
        Loader(),  # type: ignore[arg-type]
        [
            harness.Scenario("a", "http://a", load, {"connections": 32}),
            harness.Scenario("b", "http://b", load, {"connections": 1}),
        ],
        3,
    )
    assert taken == ["a", "b"] * 3  # side by side, not one scenario's rounds in a row
    assert (runs["a"].rps, runs["b"].rps) == (200.0, 20.0)
    assert runs["b"].connections == 1


def test_a_paced_row_says_the_rate_it_achieved() -> None:
    fig = _figures()
    fig.runs[report.FULL_PACED] = Run(16, 934.0, 1.0, 2.9, paced=True)
    assert "achieved 934 req/s" in report.render(fig)


def test_the_split_between_workers_is_read_from_their_journals(tmp_path: Path) -> None:
    for worker, decisions in (("worker-1", 3), ("worker-2", 1)):
        journal = tmp_path / worker / "audit.journal"
        journal.mkdir(parents=True)
        lines = ['["d",1,{}]'] * decisions + ['["a","id",{}]']  # amendments do not count
        (journal / "00000001.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert harness._share_note(tmp_path) == "split 75%/25%"  # no index to read
    assert harness._share_note(tmp_path / "worker-1") == ""  # one worker: nothing to say

    # Worker 1's index has every line of its file, worker 2's none of it.
    for worker, taken in (("worker-1", True), ("worker-2", False)):
        folder = tmp_path / worker
        db = index.connect(folder / "audit.db")
        size = (folder / "audit.journal" / "00000001.jsonl").stat().st_size
        db.execute("UPDATE journal_position SET file = 1, offset = ?", (size if taken else 0,))
        db.close()
    behind = len("\n".join(['["d",1,{}]', '["a","id",{}]']) + "\n") / 1e6
    assert harness._share_note(tmp_path) == f"split 75%/25%, index behind 0.0/{behind:.1f} MB"
    assert harness._index_behind(tmp_path / "worker-2") == len('["d",1,{}]\n["a","id",{}]\n')


def test_cpu_times_are_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    # /proc/PID/stat: pid (comm) state ppid ... utime stime ..., in clock ticks
    text = "4242 (py (x) y) S 17 4242 4242 0 -1 4194304 900 0 0 0 250 30 0 0 20 0 3 0\n"
    parent, times = cpu.parse_stat(text, ticks_per_s=100.0)
    assert parent == 17
    assert times == cpu.CpuTimes(user_s=2.5, system_s=0.3)


def test_cpu_of_a_server_and_of_the_processes_it_started() -> None:
    """A child that spends a quarter second of processor time shows up under
    its parent's helpers, not as the parent's own time."""
    burner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.process_time() + 0.25\n"
         "while time.process_time() < end: pass\nimport sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        start = cpu.sample(os.getpid())
        assert start is not None
        deadline = time.monotonic() + 20
        while True:
            now = cpu.sample(os.getpid())
            assert now is not None
            if (now.helpers - start.helpers).total_s >= 0.2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        used = cpu.per_request(start, now, requests=1000)
        assert used is not None
        assert used.helpers_us >= 200.0  # 0.2 s over 1,000 requests
        assert used.own_us < used.helpers_us  # this process only waited
    finally:
        assert burner.stdin is not None
        burner.stdin.close()
        burner.wait(timeout=10)
    assert cpu.sample(999_999_999) is None  # no such process


def test_the_ratio_gate_is_said_as_a_cpu_budget() -> None:
    fig = _figures()
    fig.runs[report.BARE] = Run(32, 7000.0, 4.5, 7.0, cpu_us=140.0, cpu_sys_us=28.0)
    fig.runs[report.FULL_REDIS] = Run(
        32, 2700.0, 11.0, 16.0, cpu_us=364.0, cpu_sys_us=51.0, helpers_us=85.0
    )
    text = report.render(fig)
    assert "the gateway's own work is 224 us" in text
    assert "needs the full path at 255 us or less: 109 us to go" in text  # 140 / 0.55
    assert "364" in text and "85" in text  # the row's columns
    fig.runs[report.FULL_REDIS] = Run(32, 5000.0, 5.0, 9.0, cpu_us=200.0, cpu_sys_us=30.0)
    assert "to go" not in report.render(fig)


def test_the_ceiling_says_what_the_gate_leaves_for_the_gateways_own_work() -> None:
    fig = _figures()
    fig.runs[report.BARE] = Run(32, 8000.0, 4.0, 6.0, cpu_us=121.0, cpu_sys_us=24.0)
    fig.runs[report.CEILING] = Run(32, 5000.0, 6.0, 8.0, cpu_us=190.0, cpu_sys_us=35.0)
    fig.runs[report.FULL_REDIS] = Run(32, 3000.0, 10.0, 14.0, cpu_us=310.0, cpu_sys_us=45.0)
    text = report.render(fig)
    assert "spends 190 us, 0.62 of the bare proxy's req/s" in text
    assert "parsing, rules and the decision have 30 us" in text  # 121 / 0.55 - 190
    fig.runs[report.CEILING] = Run(32, 4000.0, 6.0, 8.0, cpu_us=240.0, cpu_sys_us=35.0)
    assert "the decision have 0 us" in report.render(fig)  # the ceiling itself is over
