"""Where the gateway's time goes: py-spy's collapsed stacks, summed per function
(self and inclusive) and per package.

`py-spy record --format raw` writes one line per distinct stack:
`frame;frame;...;frame COUNT`, each frame `function (path:line)`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    self_samples: Counter[str]
    total_samples: Counter[str]
    packages: Counter[str]  # self samples per package


def frame_name(frame: str) -> str:
    """`function (path:line)` -> `function (short/path)`, without the line."""
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    return f"{found['function']} ({short_path(found['path'])})"


def short_path(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    for marker in ("/gateway/", "/bench/"):
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    found = re.search(r"/lib/python3\.\d+/(.*)$", path)
    if found:
        return "stdlib/" + found.group(1)
    return path


def package(frame: str) -> str:
    """The package a frame's code belongs to: gateway.store, aiohttp, stdlib:asyncio, ..."""
    name = frame_name(frame)
    found = re.search(r"\(([^()]*)\)$", name)
    path = found.group(1) if found else ""
    if path.startswith("stdlib/"):
        top = path.removeprefix("stdlib/").split("/", 1)[0].removesuffix(".py")
        return f"stdlib:{top}"
    parts = path.split("/")
    if parts[0] == "gateway" and len(parts) > 2:
        return f"gateway.{parts[1]}"
    if parts[0] in ("gateway", "bench"):
        return parts[0] + "." + parts[-1].removesuffix(".py")
    return parts[0].removesuffix(".py") or "?"


def parse_raw(text: str) -> Profile:
    self_samples: Counter[str] = Counter()
    total_samples: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        leaf = frames[-1]
        self_samples[frame_name(leaf)] += count
        packages[package(leaf)] += count
        for name in {frame_name(f) for f in frames}:
            total_samples[name] += count
    return Profile(samples, self_samples, total_samples, packages)


def summary(profile: Profile, top: int = 25) -> str:
    if profile.samples == 0:
        return "no samples"
    n = profile.samples
    lines = [f"{n} samples (on-CPU)", "", "self time by package:"]
    lines += [f"  {c / n:6.1%}  {name}" for name, c in profile.packages.most_common(top)]
    lines += ["", "self time by function:"]
    lines += [f"  {c / n:6.1%}  {name}" for name, c in profile.self_samples.most_common(top)]
    lines += ["", "inclusive time by function (gateway code):"]
    ours = [(k, c) for k, c in profile.total_samples.most_common() if "(gateway/" in k]
    lines += [f"  {c / n:6.1%}  {name}" for name, c in ours[:top]]
    return "\n".join(lines)


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start sampling `pid` (and its children) for `seconds` into `out` (raw format)."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--nonblocking",
            "--subprocesses",
            "--full-filenames",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
