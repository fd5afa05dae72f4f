"""The figures of one run, the gates of PERFORMANCE.md over them, and the table.

Pure functions over plain data, so they can be checked without any load.
"""

from __future__ import annotations

import functools
import operator
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Scenario names: the keys of `Figures.runs`.
DIRECT = "direct to stub"
BARE = "bare proxy"
CEILING = "ceiling: bare + EVALSHA + line"
FULL_EMBEDDED = "full path, embedded store"
FULL_REDIS = "full path, Redis"
FULL_REDIS_PERSONAL = "full path, Redis, personal texts"
CHECK = "/v1/check, Redis"
EMPTY = "empty endpoint (/healthz)"
FULL_REDIS_2W = "full path, Redis, 2 workers"
FULL_REDIS_PG = "full path, Redis, PostgreSQL trail"
DIRECT_C1 = "direct to stub, 1 conn"
BARE_C1 = "bare proxy, 1 conn"
FULL_C1 = "full path, Redis, 1 conn"
DIRECT_PACED = "direct to stub, ~1k/s"
BARE_PACED = "bare proxy, ~1k/s"
FULL_PACED = "full path, Redis, ~1k/s"

RATIO_GATE = 0.55  # full path / bare proxy, req/s


@dataclass(frozen=True, slots=True)
class Run:
    """One measured scenario."""

    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    ok: bool = True  # every answer was 2xx and no socket errors
    workers: int = 1
    note: str = ""
    paced: bool = False  # a paced run: its req/s is what was achieved of the offered rate
    # Processor time per request (bench/cpu.py), where it was read: the
    # server's own, the kernel's part of it, and the processes it started.
    cpu_us: float | None = None
    cpu_sys_us: float | None = None
    helpers_us: float | None = None

    @property
    def rps_per_worker(self) -> float:
        return self.rps / self.workers


@dataclass
class Figures:
    runs: dict[str, Run] = field(default_factory=dict)
    redis_calls_per_message: float | None = None
    redis_calls_detail: str = ""
    content_rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Gate:
    figure: str
    measured: str
    gate: str
    holds: bool | None  # None: not measured in this run


def _ratio(runs: Mapping[str, Run], top: str, bottom: str) -> float | None:
    if top not in runs or bottom not in runs or runs[bottom].rps <= 0:
        return None
    return runs[top].rps / runs[bottom].rps


def _added(runs: Mapping[str, Run], path: str, base: str) -> tuple[float, float] | None:
    if path not in runs or base not in runs:
        return None
    return runs[path].p50_ms - runs[base].p50_ms, runs[path].p99_ms - runs[base].p99_ms


def content_us_1kb(rows: Iterable[Mapping[str, Any]], terms: int) -> float | None:
    """The slowest normalize+match over 1 KB messages (1,000 characters of
    English, or 1 KB of UTF-8 Chinese) with `terms` banned terms."""
    values = [
        float(row["us"])
        for row in rows
        if str(row["check"]).startswith("normalize+match")
        and row["terms"] == terms
        and 1000 <= int(row["utf8_bytes"]) < 1100
    ]
    return max(values) if values else None


def median_run(runs: Sequence[Run]) -> Run:
    """The rounds of one scenario as one: the median of each figure (so p99
    is the median of the rounds' p99s), all-2xx only if every round was."""
    if len(runs) == 1:
        return runs[0]

    def mid(values: Iterable[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    first = runs[0]
    return Run(
        connections=first.connections,
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        ok=all(r.ok for r in runs),
        workers=first.workers,
        note=first.note,
        paced=first.paced,
        cpu_us=mid(r.cpu_us for r in runs),
        cpu_sys_us=mid(r.cpu_sys_us for r in runs),
        helpers_us=mid(r.helpers_us for r in runs),
    )


def _holds(value: float | None, test: Callable[[float], bool]) -> bool | None:
    return None if value is None else test(value)


def gates(fig: Figures) -> list[Gate]:
    runs = fig.runs
    out: list[Gate] = []

    def add(
        figure: str, value: float | None, fmt: str, gate: str, ok: Callable[[float], bool]
    ) -> None:
        measured = "n/a" if value is None else fmt.format(value)
        out.append(Gate(figure, measured, gate, _holds(value, ok)))

    add(
        "full path (Redis) / bare proxy, req/s",
        _ratio(runs, FULL_REDIS, BARE),
        "{:.2f}",
        f">= {RATIO_GATE} (aim 0.70)",
        lambda v: v >= RATIO_GATE,
    )
    add(
        "/v1/check / empty endpoint, req/s",
        _ratio(runs, CHECK, EMPTY),
        "{:.2f}",
        ">= 0.25 (aim 0.35)",
        lambda v: v >= 0.25,
    )
    full = runs.get(FULL_REDIS)
    add(
        "full path per worker, req/s",
        full.rps_per_worker if full else None,
        "{:,.0f}",
        ">= 4,000 (aim 6,000)",
        lambda v: v >= 4000,
    )
    for label, path, base, p50_gate, p99_gate in (
        ("one connection", FULL_C1, DIRECT_C1, 0.5, 1.0),
        ("at ~1,000 req/s", FULL_PACED, DIRECT_PACED, 2.0, 5.0),
    ):
        added = _added(runs, path, base)
        for index, (percentile, limit) in enumerate((("p50", p50_gate), ("p99", p99_gate))):
            add(
                f"added latency {label}, {percentile} ms",
                added[index] if added else None,
                "{:+.2f}",
                f"<= +{limit:g}",
                functools.partial(operator.ge, limit),
            )
    add(
        "p99 at saturation (32 conns, full path), ms",
        full.p99_ms if full else None,
        "{:.2f}",
        "<= 10 (aim 5)",
        lambda v: v <= 10,
    )
    add(
        "Redis round trips per allowed message",
        fig.redis_calls_per_message,
        "{:.2f}",
        "== 1",
        lambda v: round(v, 2) == 1.0,
    )
    add(
        "content check, 10,000 terms, 1 KB, us",
        content_us_1kb(fig.content_rows, 10_000),
        "{:.1f}",
        "<= 100 (aim 50)",
        lambda v: v <= 100,
    )
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def scenario_lines(fig: Figures) -> list[str]:
    rows = []
    for name, run in fig.runs.items():
        per_worker = f"{run.rps_per_worker:,.0f}" if run.workers > 1 else ""
        note = run.note
        if run.paced:
            note = f"achieved {run.rps:,.0f} req/s" + (f", {note}" if note else "")
        if not run.ok:
            note = ("NOT ALL 2xx/errors! " + note).strip()
        rows.append(
            [
                name,
                str(run.connections),
                f"{run.rps:,.0f}",
                per_worker,
                f"{run.p50_ms:.2f}",
                f"{run.p99_ms:.2f}",
                "" if run.cpu_us is None else f"{run.cpu_us:,.0f}",
                "" if not run.helpers_us else f"{run.helpers_us:,.0f}",
                note,
            ]
        )
    header = [
        "scenario", "conns", "req/s", "per worker", "p50 ms", "p99 ms", "cpu us", "+helpers", "note"
    ]  # fmt: skip
    return _table(header, rows, right={1, 2, 3, 4, 5, 6, 7})


def cpu_lines(fig: Figures) -> list[str]:
    """The ratio gate in processor time: at saturation each server spends a
    core, so req/s is 1 / (CPU per request) and the gate is a CPU budget."""
    bare, full = fig.runs.get(BARE), fig.runs.get(FULL_REDIS)
    if bare is None or full is None or bare.cpu_us is None or full.cpu_us is None:
        return []
    budget = bare.cpu_us / RATIO_GATE
    own = full.cpu_us - bare.cpu_us
    lines = [
        "cpu us: processor time per request of the server process (user + system), at"
        " saturation; +helpers: of the processes it started (the trail's indexer, at a lower"
        " priority)",
        f"full path {full.cpu_us:,.0f} us per request ({full.cpu_sys_us or 0:,.0f} in the kernel),"
        f" bare proxy {bare.cpu_us:,.0f} ({bare.cpu_sys_us or 0:,.0f}): the gateway's own work"
        f" is {own:,.0f} us.",
    ]
    if full.cpu_us > budget:
        lines.append(
            f"The ratio gate ({RATIO_GATE}) needs the full path at {budget:,.0f} us or less:"
            f" {full.cpu_us - budget:,.0f} us to go."
        )
    ceiling = fig.runs.get(CEILING)
    if ceiling is not None and ceiling.cpu_us is not None:
        left = budget - ceiling.cpu_us
        lines.append(
            f"The ceiling (the bare proxy plus one EVALSHA and one journal line, nothing else)"
            f" spends {ceiling.cpu_us:,.0f} us, {ceiling.rps / bare.rps:.2f} of the bare proxy's"
            f" req/s (PERFORMANCE.md: 0.62): within the gate, parsing, rules and the decision"
            f" have {max(left, 0):,.0f} us."
        )
    return lines


def gate_lines(fig: Figures) -> list[str]:
    rows = []
    for gate in gates(fig):
        verdict = {True: "holds", False: "FAILS", None: "not measured"}[gate.holds]
        rows.append([gate.figure, gate.measured, gate.gate, verdict])
    return _table(["gate", "measured", "gate", "verdict"], rows, right={1})


CONTENT_COLUMNS: list[tuple[str, str, int]] = [
    # (column, language, characters)
    ("en 160", "en", 160),
    ("en 1,000 (1 KB)", "en", 1000),
    ("zh 160", "zh", 160),
    ("zh 341 (1 KB)", "zh", 341),
    ("zh 1,000", "zh", 1000),
]


def content_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """us per check, 'no match / match at end', per term count and message."""
    if not rows:
        return []
    cells: dict[tuple[int, str, int, str], float] = {}
    for row in rows:
        check = str(row["check"])
        if not check.startswith("normalize+match "):
            continue
        language, label = check.removeprefix("normalize+match ").split(", ", 1)
        cells[(int(row["terms"]), language, int(row["chars"]), label)] = float(row["us"])
    counts = sorted({key[0] for key in cells})
    table = []
    for count in counts:
        line = [f"{count:,}"]
        for _, language, chars in CONTENT_COLUMNS:
            miss = cells.get((count, language, chars, "no match"))
            hit = cells.get((count, language, chars, "match at end"))
            line.append("" if miss is None or hit is None else f"{miss:.1f} / {hit:.1f}")
        table.append(line)
    header = ["terms", *(name for name, _, _ in CONTENT_COLUMNS)]
    return _table(header, table, right=set(range(1, len(header))))


def render(fig: Figures, title: str = "") -> str:
    parts: list[str] = []
    if title:
        parts += [title, ""]
    parts += scenario_lines(fig)
    parts += ["", *gate_lines(fig)]
    cpu = cpu_lines(fig)
    if cpu:
        parts += ["", *cpu]
    if fig.redis_calls_detail:
        parts += ["", f"Redis commands counted: {fig.redis_calls_detail}"]
    content = content_lines(fig.content_rows)
    if content:
        parts += ["", "content check (normalize + match), us: no match / match at end", *content]
    return "\n".join(parts)
