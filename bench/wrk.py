"""Load with wrk: a Lua script per scenario, one parseable result line per run.

The script builds each POST body from a template with a per-connection counter
at each marker (so recipients, and optionally texts, vary and caps never trip),
optionally waits between requests (`delay()`, exponential with a given mean: a
paced, roughly Poisson load), and
prints its summary from `done()` as one `BENCH key=value ...` line.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

RESULT_TAG = "BENCH"

_LUA = r"""
local method = [==[{method}]==]
local path = [==[{path}]==]
local parts = {{ {parts} }}
local digits = {digits}
local delay_mean_ms = {delay_mean_ms}
local headers = {{}}
{headers}
local modulus = 10 ^ digits
local counter = 0
local started = 0

function setup(thread)
  thread:set("thread_offset", started * 7919)
  started = started + 1
end

function init(args)
  local base = tonumber(args[1] or "0") or 0
  counter = base + (thread_offset or 0)
  math.randomseed(base + (thread_offset or 0) + 1)
end

function request()
  if #parts == 0 then
    return wrk.format(method, path, headers, nil)
  end
  counter = counter + 1
  local n = string.format("%0" .. digits .. "d", counter % modulus)
  return wrk.format(method, path, headers, table.concat(parts, n))
end

if delay_mean_ms > 0 then
  function delay()
    return math.floor(-math.log(1 - math.random()) * delay_mean_ms + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{tag} requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d"
      .. " mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class Load:
    """What one wrk run sends."""

    method: str = "GET"
    path: str = "/"
    body_template: str | None = None  # with `marker` where the counter's digits go
    marker: str = "@N@"
    digits: int = 5
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # connect, read, write and time-out errors
    non2xx: int  # answers outside 2xx and 3xx
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.errors == 0 and self.non2xx == 0


def lua_script(load: Load, delay_mean_ms: float = 0.0) -> str:
    """The wrk Lua script for `load` (paced when `delay_mean_ms` > 0)."""
    parts: list[str] = []
    if load.body_template is not None:
        if load.marker not in load.body_template:
            raise ValueError(f"the body template has no {load.marker!r}")
        parts = load.body_template.split(load.marker)  # the digits go at every marker
    for text in (load.method, load.path, *parts):
        if "]==]" in text:
            raise ValueError("the load cannot contain ']==]'")
    headers = ""
    if load.body_template is not None:
        headers = f'headers["Content-Type"] = "{load.content_type}"'
    return _LUA.format(
        method=load.method,
        path=load.path,
        parts=", ".join(f"[==[{part}]==]" for part in parts),
        digits=load.digits,
        delay_mean_ms=repr(float(delay_mean_ms)),
        headers=headers,
        tag=RESULT_TAG,
    )


def parse(output: str) -> WrkResult:
    """The result of a run from wrk's output (the `BENCH ...` line of done())."""
    for line in output.splitlines():
        if line.startswith(RESULT_TAG + " "):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            break
    else:
        raise ValueError("no result line in the wrk output:\n" + output[-2000:])

    def ms(key: str) -> float:
        return float(fields[key]) / 1000.0

    return WrkResult(
        requests=int(fields["requests"]),
        duration_s=float(fields["duration_us"]) / 1e6,
        errors=sum(int(fields[k]) for k in ("connect", "read", "write", "timeout")),
        non2xx=int(fields["status"]),
        mean_ms=ms("mean_us"),
        p50_ms=ms("p50_us"),
        p90_ms=ms("p90_us"),
        p99_ms=ms("p99_us"),
        p999_ms=ms("p999_us"),
        max_ms=ms("max_us"),
    )


def executable() -> str | None:
    return shutil.which("wrk")


def run(
    url: str,
    script: Path,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    start: int = 0,
    timeout_s: float = 5.0,
) -> WrkResult:
    """One bounded wrk run against `url` (scheme, host, port and path)."""
    wrk = executable()
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    command = [
        wrk,
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(script),
        url,
        "--",
        str(start),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return parse(done.stdout)
