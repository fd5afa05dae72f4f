"""Processor time a server spends per request, read from /proc (Linux).

A req/s figure says how fast, not where the time went: the full path's ratio
to the bare proxy is a ratio of CPU per request once both saturate a core.
This reads each process's user and system time (all its threads) before and
after a measured run, so the table can say how many microseconds of processor
each request cost the server itself and the processes it started (the trail's
indexer), and how far that is from what the ratio gate allows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Seconds of processor time: in the process's own code, and in the kernel for it."""

    user_s: float
    system_s: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user_s - other.user_s, self.system_s - other.system_s)

    def __add__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user_s + other.user_s, self.system_s + other.system_s)

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s


ZERO = CpuTimes(0.0, 0.0)


def parse_stat(text: str, ticks_per_s: float) -> tuple[int, CpuTimes]:
    """(parent pid, times) from the text of /proc/PID/stat. The command name,
    in parentheses, may hold spaces and parentheses: fields count from the last ')'."""
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state (3), ppid (4), ... utime (14), stime (15), in clock ticks.
    parent = int(fields[1])
    return parent, CpuTimes(int(fields[11]) / ticks_per_s, int(fields[12]) / ticks_per_s)


def _ticks_per_s() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def _stat(pid: int) -> tuple[int, CpuTimes] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:  # gone, or not Linux
        return None
    return parse_stat(text, _ticks_per_s())


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading: the server's own times and the sum over its descendants."""

    own: CpuTimes
    helpers: CpuTimes


def sample(pid: int) -> Sample | None:
    """The times of `pid` and of every process below it; None if it is gone."""
    own = _stat(pid)
    if own is None:
        return None
    children: dict[int, list[int]] = {}
    times: dict[int, CpuTimes] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        found = _stat(int(entry.name))
        if found is not None:
            children.setdefault(found[0], []).append(int(entry.name))
            times[int(entry.name)] = found[1]
    helpers, stack = ZERO, list(children.get(pid, []))
    while stack:
        child = stack.pop()
        helpers += times.get(child, ZERO)
        stack += children.get(child, [])
    return Sample(own[1], helpers)


@dataclass(frozen=True, slots=True)
class PerRequest:
    """Microseconds of processor time per request over one run."""

    user_us: float
    system_us: float
    helpers_us: float  # the processes the server started (the trail's indexer)

    @property
    def own_us(self) -> float:
        return self.user_us + self.system_us


def per_request(before: Sample, after: Sample, requests: int) -> PerRequest | None:
    if requests <= 0:
        return None
    own, helpers = after.own - before.own, after.helpers - before.helpers
    scale = 1e6 / requests
    return PerRequest(own.user_s * scale, own.system_s * scale, max(0.0, helpers.total_s) * scale)
