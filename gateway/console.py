"""What the commands share on the terminal: output files that appear whole or
not at all, and a progress line for long work."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from gateway.errors import GatewayError

PROGRESS_EVERY = 0.25  # seconds between progress lines on a terminal


@contextlib.contextmanager
def output(path: Path | None) -> Iterator[IO[str]]:
    """Standard output, or a file that appears whole or not at all: written
    beside it under another name and renamed once complete."""
    if path is None:
        yield sys.stdout
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        file = partial.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise GatewayError(f"--output: cannot write {path} ({exc.strerror})") from None
    try:
        with file:
            yield file
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class Progress:
    """A line on the terminal that says how far long work has got
    ("exported 1,200 decisions", "imported 300 of 2,000"), shown only on a
    terminal and when `show` (not over output that goes to the terminal too)."""

    def __init__(
        self, verb: str, noun: str = "", total: int | None = None, *, show: bool = True
    ) -> None:
        self.n = 0
        self._verb, self._noun, self._total = verb, noun, total
        self._enabled = show and sys.stderr.isatty()
        self._shown = time.monotonic()

    def count(self, n: int | None = None) -> None:
        self.n = self.n + 1 if n is None else n
        if self._enabled and time.monotonic() - self._shown >= PROGRESS_EVERY:
            self._shown = time.monotonic()
            of = f" of {self._total:,}" if self._total is not None else ""
            line = f"{self._verb} {self.n:,}{of} {self._noun}".rstrip()
            print(f"\r{line}", end="", file=sys.stderr, flush=True)

    def done(self, line: str | None = None) -> None:
        """Clear the progress line; then print `line` on standard error, if given."""
        if self._enabled:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        if line is not None:
            print(line, file=sys.stderr)
