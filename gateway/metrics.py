"""`GET /metrics`: what the gateway decided and how its upstreams answered,
in Prometheus's text format.

Counting happens on every message, so it is plain dict arithmetic (well under
a microsecond); a Prometheus client library costs several microseconds a
message. Each process counts its own. With several worker processes sharing
a data folder, each writes a snapshot of its counts to its own folder every
second (`metrics.json`), and whichever process answers a scrape adds the
others' snapshots, each series labelled with its `worker`: so every scrape
sees every worker, and a worker's restart resets only its own series, as
Prometheus expects of a counter.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.model import Code, Decision, Verdict

SNAPSHOT = "metrics.json"
SNAPSHOT_EVERY = 1.0  # seconds
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Upstream latency buckets, seconds: a provider answers in tens to hundreds of ms.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The counts of one process."""

    def __init__(self) -> None:
        # Keyed by the values as they come (enums, ints): turned into text only
        # when a snapshot is taken, not on every message.
        self.decisions: dict[tuple[str, Verdict], int] = {}  # (route, decision)
        self.failures: Counter[tuple[str, Code]] = Counter()  # (rule, code), enforced
        self.upstream: dict[tuple[str, int | None], int] = {}  # (route, status; None: none)
        self.latency: dict[str, list[float]] = {}  # route -> bucket counts, then sum
        self.unavailable: Counter[str] = Counter()  # "store" or "trail"

    def decided(self, decision: Decision) -> None:
        """A message decided for sending (not a `/v1/check`)."""
        key = (decision.route, decision.decision)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        if decision.decision is not Verdict.ALLOW:
            for reason in decision.reasons:
                self.failures[(reason.rule, reason.code)] += 1

    def answered(self, route: str, status: int | None, latency_ms: float | None) -> None:
        """The upstream's answer (`status` None: it gave none)."""
        key = (route, status)
        self.upstream[key] = self.upstream.get(key, 0) + 1
        if latency_ms is not None:
            counts = self.latency.get(route)
            if counts is None:
                counts = self.latency[route] = [0.0] * (len(BUCKETS) + 2)
            seconds = latency_ms / 1000
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            counts[-1] += seconds

    def refused_unavailable(self, part: str) -> None:
        self.unavailable[part] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "decisions": [[route, v.value, n] for (route, v), n in self.decisions.items()],
            "failures": [[rule, code.value, n] for (rule, code), n in self.failures.items()],
            "upstream": [
                [route, "none" if status is None else str(status), n]
                for (route, status), n in self.upstream.items()
            ],
            "latency": self.latency,
            "unavailable": [[k, n] for k, n in self.unavailable.items()],
        }


def write_snapshot(metrics: Metrics, folder: Path) -> None:
    """This process's counts, for the other workers to serve (atomic rename)."""
    partial = folder / f".{SNAPSHOT}.partial"
    with contextlib.suppress(OSError):  # a full disk costs the metrics, not a message
        partial.write_text(json.dumps(metrics.snapshot()), encoding="utf-8")
        os.replace(partial, folder / SNAPSHOT)


def gather(own: Metrics, worker: str | None, data_dir: Path) -> list[tuple[str | None, Any]]:
    """(worker, snapshot) of this process and of the other workers in the folder."""
    found: list[tuple[str | None, Any]] = [(worker, own.snapshot())]
    if worker is None:
        return found
    for path in sorted(data_dir.glob(f"worker-*/{SNAPSHOT}")):
        name = path.parent.name.removeprefix("worker-")
        if name == worker:
            continue
        with contextlib.suppress(OSError, ValueError):
            found.append((name, json.loads(path.read_text(encoding="utf-8"))))
    return found


def render(snapshots: Iterable[tuple[str | None, Any]], policy_version: str) -> str:
    """Prometheus text exposition (format 0.0.4) of the snapshots."""
    out: list[str] = []
    taken = list(snapshots)

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    def sample(name: str, labels: dict[str, str | None], value: float) -> None:
        pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items() if v is not None)
        out.append(f"{name}{{{pairs}}} {_number(value)}" if pairs else f"{name} {_number(value)}")

    family("gateway_policy_info", "gauge", "The policy bundle in force (its version).")
    sample("gateway_policy_info", {"version": policy_version}, 1)
    for name, key, labels, help_text in _COUNTERS:
        family(name, "counter", help_text)
        for worker, snap in taken:
            for *values, n in snap.get(key, []):
                sample(name, {**dict(zip(labels, values, strict=True)), "worker": worker}, n)
    family("gateway_upstream_latency_seconds", "histogram", "Time the upstream took to answer.")
    for worker, snap in taken:
        for route, counts in sorted(snap.get("latency", {}).items()):
            _histogram(sample, {"route": route, "worker": worker}, counts)
    return "\n".join(out) + "\n"


_COUNTERS = (
    (
        "gateway_decisions_total",
        "decisions",
        ("route", "decision"),
        "Messages decided for sending, by route and decision.",
    ),
    (
        "gateway_rule_failures_total",
        "failures",
        ("rule", "code"),
        "Enforced rule failures in refused or deferred messages.",
    ),
    (
        "gateway_upstream_responses_total",
        "upstream",
        ("route", "status"),
        "Upstream answers by HTTP status ('none': no answer).",
    ),
    (
        "gateway_unavailable_total",
        "unavailable",
        ("part",),
        "Messages refused (503) because the store or the trail was unreachable.",
    ),
)


def _histogram(sample: Any, labels: dict[str, str | None], counts: list[float]) -> None:
    total = 0.0
    for bound, n in zip((*BUCKETS, float("inf")), counts[:-1], strict=True):
        total += n
        le = "+Inf" if bound == float("inf") else _number(bound)
        sample("gateway_upstream_latency_seconds_bucket", {**labels, "le": le}, total)
    sample("gateway_upstream_latency_seconds_sum", labels, counts[-1])
    sample("gateway_upstream_latency_seconds_count", labels, total)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
