"""The indexer: a process of its own that builds the trail's index from the
journal, so that SQLite's work never shares the gateway's interpreter (a
thread would: under load, each time it took the interpreter back it waited
for the event loop, and each time it did, a request waited for it).

    python -m gateway.audit.indexer INDEX [--synchronous-full] [--retention-seconds N]

Commands on standard input, one per line:

    to FILE OFFSET      the journal is whole up to here: index it
    stop FILE OFFSET    the same, then every journal file whole, and exit

Answers on standard output, one per line:

    at FILE OFFSET      how far the index has got
    error TEXT          why it could not; it tries again every RETRY_DELAY

The end of its input (the gateway is gone, even killed) counts as `stop`.
With a retention, it also removes the records older than that
(gateway/audit/retention.py), one journal file at a time between index
passes, so that removing a busy day never holds the index up for long.
It ignores SIGINT and SIGTERM: the gateway stops it, so that a Ctrl-C or a
service manager stopping the whole group does not cut an index pass short.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path

from gateway.audit import index, journal, retention
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.journal import Position
from gateway.errors import AuditUnavailable

RETRY_DELAY = 1.0  # seconds between tries while the index cannot be written
CHECKPOINT_EVERY = 0.05  # seconds
STOP_TRIES = 3  # tries to index the rest before exiting on `stop`
PRUNE_EVERY = 3600.0  # seconds between looks for records past the retention
PRUNE_SOON = 1.0  # seconds before the next file, while old ones remain


class Commands:
    """The lines waiting on a file descriptor, read without blocking past `wait`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self.ended = False

    def wait(self, timeout: float | None) -> list[tuple[str, Position]]:
        """Everything that arrives within `timeout` (None: until something
        does), each command as (verb, position)."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        while ready and not self.ended:
            data = os.read(self._fd, 65536)
            if not data:
                self.ended = True
                break
            self._buffer += data
            ready, _, _ = select.select([self._fd], [], [], 0)
        *lines, self._buffer = self._buffer.split(b"\n")
        commands = []
        for line in lines:
            verb, number, offset = line.decode("ascii").split()
            commands.append((verb, (int(number), int(offset))))
        return commands


def say(text: str) -> bool:
    """One answer line; False once nobody reads them."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        return False
    return True


class Pruner:
    """When the next journal file past the retention is removed: soon while
    there are more, else after a while."""

    def __init__(self, path: Path, retention_seconds: int | None) -> None:
        self._path = path
        self._seconds = retention_seconds
        self.due = time.monotonic() if retention_seconds is not None else None

    def wait(self) -> float | None:
        return None if self.due is None else max(0.0, self.due - time.monotonic())

    def run_if_due(self) -> None:
        if self.due is None or self._seconds is None or time.monotonic() < self.due:
            return
        cutoff_ms = int((time.time() - self._seconds) * 1000)
        try:
            done = retention.prune(self._path, cutoff_ms, max_files=1)
        except AuditUnavailable as exc:
            # Records kept longer than asked; nothing the gateway must stop for.
            print(f"audit retention: {exc}", file=sys.stderr, flush=True)
            done = retention.Pruned(0, 0, 0)
        self.due = time.monotonic() + (PRUNE_SOON if done.files else PRUNE_EVERY)


def run(path: Path, synchronous_full: bool, retention_seconds: int | None = None) -> int:
    db = index.connect(path, synchronous_full=synchronous_full)
    folder = index.folder_of(path)
    builder = index.Builder(db, folder)
    # Often, so that each checkpoint copies little: one copying a second's
    # pages at once held up requests on a 2-core machine (p99, one connection).
    checkpointer = Checkpointer(path, every=CHECKPOINT_EVERY)
    commands = Commands(sys.stdin.fileno())
    pruner = Pruner(path, retention_seconds)
    target: Position | None = None
    stopping, failures = False, 0
    try:
        while True:
            waits = [w for w in (RETRY_DELAY if failures else None, pruner.wait()) if w is not None]
            for verb, at in commands.wait(min(waits) if waits else None):
                target = at if target is None else max(target, at)
                stopping = stopping or verb == "stop"
            if commands.ended or stopping:
                stopping = True
                # every file whole: one past the last there is
                last = max([0, *journal.file_numbers(folder), *(target or (0, 0))[:1]])
                target = (last + 1, 0)
            if target is not None:
                try:
                    at = builder.build_to(target)
                except AuditUnavailable as exc:
                    failures += 1
                    say(f"error {exc}")
                    if stopping and failures >= STOP_TRIES:
                        return 1  # the journal keeps the rest for the next start
                    if stopping:
                        time.sleep(RETRY_DELAY)
                    continue
                failures = 0
                say(f"at {at[0]} {at[1]}")
            if stopping:
                return 0
            pruner.run_if_due()
    finally:
        checkpointer.stop()
        db.close()


NICE = 5  # below the gateway's workers, and still a share of a busy processor


def _in_the_background() -> None:
    """Behind the requests, yet never starved. Linux's batch class never
    preempts a running request when the indexer wakes up, and nice 5 gives
    it a smaller share than the workers'. It used to run in the idle class,
    which gets nothing while the cores are busy: two workers at saturation
    on two cores left the index 256 MB behind within a minute, and then
    every new message failed closed (503). With this it stayed under 1 MB
    behind; requests at ~1,000 req/s took as long, and at one connection
    their p99 rose a little (1.45-1.93 against 1.33-1.54 ms, four runs each)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.nice(NICE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.audit.indexer")
    parser.add_argument("index", type=Path)
    parser.add_argument("--synchronous-full", action="store_true")
    parser.add_argument("--retention-seconds", type=int)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _in_the_background()
    try:
        return run(args.index, args.synchronous_full, args.retention_seconds)
    except AuditUnavailable as exc:
        say(f"error {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
