"""The trail's journal: append-only files the decisions are written to before
anything is sent, which the queryable index is built from in bulk, and which
keep the documents the index points to.

An entry is one line of JSON, sealed with its link in the trail's hash chain
(gateway/audit/chain.py), written with one `write()` on the event loop:
once it returns, the entry is in the kernel's hands and outlives a crash of
the process (as a SQLite commit with synchronous=NORMAL does); with
`synchronous_full`, the trail also syncs the file before the caller goes on.
A line never holds a raw newline (JSON escapes them), so a torn last line,
left by a crash in the middle of a write, is recognised by its missing
newline and dropped: its caller never heard back, so nothing was sent for it.

Files are numbered and the numbers only grow: each process opening the trail
starts a file of its own, and a file is rotated once it is `rotate_bytes`
long or a day old. A position in the journal is (file number, offset): the index stores
the position it has reached in the same transaction as the rows, so an entry
is indexed exactly once however the process stops. The chain runs on across
files: a new process takes up the link of the last whole entry there is.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from gateway.audit import chain
from gateway.errors import AuditUnavailable

Position = tuple[int, int]  # (file number, byte offset in it)
_SUFFIX = ".jsonl"
ROTATE_BYTES = 64 * 1024 * 1024
# A file is also closed after a day, so that retention (which removes whole
# files) keeps a record at most about a day past its time, however quiet.
ROTATE_SECONDS = 86400.0
CHUNK_BYTES = 4 * 1024 * 1024  # what the index reads and inserts at a time


class Journal:
    """The writing end. `numbers_from` is the smallest number it may use (one
    past the last the index has seen), so that numbers never repeat; `start`
    is the chain's link if no file holds an entry (retention removed them)."""

    def __init__(
        self,
        folder: Path,
        numbers_from: int = 1,
        rotate_bytes: int = ROTATE_BYTES,
        start: bytes = chain.GENESIS,
    ) -> None:
        self.folder = folder
        self._rotate_bytes = rotate_bytes
        self._broken: str | None = None
        self._fd = -1
        try:
            folder.mkdir(exist_ok=True)
            numbers = file_numbers(folder)
            self.head = last_link(folder, numbers, start)
            self._start(max([numbers_from - 1, *numbers]) + 1)
        except OSError as exc:
            raise AuditUnavailable(
                f"audit trail: cannot open the journal in {folder}: {exc}"
            ) from None
        self.written = 0  # bytes written by this process, all files together

    @property
    def position(self) -> Position:
        return self.number, self.end

    def _start(self, number: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path_of(self.folder, number), flags, 0o600)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.number, self.end = fd, number, 0
        self._started = time.monotonic()

    def write(self, entries: list[bytes]) -> None:
        """Append entries (JSON arrays, no newline), each sealed with its
        link, in one write: all of them or none."""
        line, head = chain.sealed(entries, self.head)
        if self._broken is not None:
            raise AuditUnavailable(f"audit trail: the journal cannot be written ({self._broken})")
        try:
            done = os.write(self._fd, line)
            while done < len(line):  # a full disk or a signal can cut a write short
                done += os.write(self._fd, memoryview(line)[done:])
        except OSError as exc:
            self._undo(exc)
            raise AuditUnavailable(f"audit trail: the journal cannot be written: {exc}") from None
        self.head = head
        self.end += len(line)
        self.written += len(line)
        if self.end >= self._rotate_bytes or time.monotonic() - self._started > ROTATE_SECONDS:
            self._rotate()

    def _undo(self, exc: OSError) -> None:
        """Cut a partly written line off, so that the next one starts clean;
        if even that fails, write nothing more (every append fails closed)."""
        try:
            os.ftruncate(self._fd, self.end)
        except OSError:
            self._broken = str(exc)

    def _rotate(self) -> None:
        # If it fails, the current file goes on taking entries; the next write tries again.
        with contextlib.suppress(OSError):
            self._start(self.number + 1)

    def sync(self) -> None:
        """fdatasync the current file (on a thread: it waits for the disk)."""
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise AuditUnavailable(f"audit trail: the journal cannot be synced: {exc}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def path_of(folder: Path, number: int) -> Path:
    return folder / f"{number:08d}{_SUFFIX}"


def file_numbers(folder: Path) -> list[int]:
    """The numbers of the journal files in `folder`, in order."""
    found = []
    for path in folder.glob(f"*{_SUFFIX}"):
        if path.stem.isdigit():
            found.append(int(path.stem))
    return sorted(found)


def last_link(folder: Path, numbers: list[int], start: bytes = chain.GENESIS) -> bytes:
    """The link of the last whole entry in the newest of these files that
    has one: the chain's start (`start`: where retention left it) if none
    has, or GENESIS if that entry predates the chain."""
    for number in reversed(numbers):
        line = _last_line(path_of(folder, number))
        if line is not None:
            found = chain.opened(line)[1]
            return chain.GENESIS if found is None else found
    return start


def _last_line(path: Path) -> bytes | None:
    """The last whole line of a file (a torn fragment after it is ignored)."""
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        step = 4096
        while True:
            start = max(0, size - step)
            file.seek(start)
            data = file.read(size - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                before = data.rfind(b"\n", 0, cut)
                if before >= 0 or start == 0:
                    return data[before + 1 : cut + 1]
            elif start == 0:
                return None
            step *= 4


def next_lines(path: Path, start: int, stop: int | None) -> tuple[bytes, int] | None:
    """The whole lines of the file from offset `start`, up to `stop` (None:
    the end of the file), at most about CHUNK_BYTES of them (at least one),
    and the offset just past them; None if there are none. A torn last line
    is left out."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    with file:
        file.seek(start)
        taken = b""
        while True:
            want = CHUNK_BYTES if stop is None else min(CHUNK_BYTES, stop - start - len(taken))
            data = file.read(want) if want > 0 else b""
            taken += data
            cut = taken.rfind(b"\n") + 1
            if cut or not data:
                break  # whole lines, or no more to read
        if not cut:
            return None
        return taken[:cut], start + cut
