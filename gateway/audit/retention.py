"""Retention: the trail's oldest records removed once they are older than the
retention, whole journal files at a time, with their index rows.

A file goes only when every entry in it is past the cut-off (its newest
decision, and its last write, are older), when every file before it goes
too, when the index has read all of it, and never the newest file holding
an entry (the next process takes the chain up from there). So records are
kept at least as long as the retention, and what is left is a suffix of the
chain: the link of the last removed entry is stored (`journal_pruned`), and
verification goes on from it, saying how much was removed and when.

The steps survive a crash at any point: the cut is recorded first, then the
rows are deleted a few thousand per transaction (so that the indexer, which
writes the same database, never waits long), then the files are unlinked;
a later run finishes what an interrupted one began.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.audit import chain, index, journal

BATCH = 5000  # rows deleted per transaction


@dataclass(frozen=True, slots=True)
class Pruned:
    files: int
    decisions: int
    amendments: int


def prunable(files: list[tuple[int, int]], below: int, cutoff_ms: int) -> list[int]:
    """Pure: of the files (number, newest ms) in order, the leading run that
    is older than `cutoff_ms`, among the numbers under `below`."""
    chosen = []
    for number, newest_ms in files:
        if number >= below or newest_ms >= cutoff_ms:
            break
        chosen.append(number)
    return chosen


@index.translated
def prune(
    index_path: Path,
    cutoff_ms: int,
    progress: Callable[[int], None] | None = None,
    max_files: int | None = None,
) -> Pruned:
    """Remove the trail's files (and rows) whose every entry is older than
    `cutoff_ms`, at most `max_files` of them; `progress(n)` hears the rows
    deleted so far."""
    db = index.connect(index_path)
    try:
        folder = index.folder_of(index_path)
        numbers = journal.file_numbers(folder)
        done = index.pruned(db)
        upto = done[0] if done else 0
        chosen = _choose(db, folder, [n for n in numbers if n > upto], cutoff_ms)[:max_files]
        counts = (0, 0)
        if chosen:
            counts = _record_cut(db, folder, chosen, done[1] if done else chain.GENESIS, cutoff_ms)
            upto = chosen[-1]
        if upto:
            _delete_rows(db, upto, progress)
            for number in numbers:
                if number <= upto:
                    journal.path_of(folder, number).unlink(missing_ok=True)
        return Pruned(len(chosen), *counts)
    finally:
        db.close()


def _choose(db: sqlite3.Connection, folder: Path, numbers: list[int], cutoff_ms: int) -> list[int]:
    """The files to remove now: fully indexed, not the newest holding an
    entry, and older than the cut-off by their decisions and their last write."""
    holding = [n for n in numbers if journal.path_of(folder, n).stat().st_size > 0]
    if not holding:
        return []
    below = min(index.position(db)[0], holding[-1])
    aged = []
    for number in numbers:
        if number >= below:
            break
        path = journal.path_of(folder, number)
        aged.append((number, max(_newest_decision_ms(path), int(path.stat().st_mtime * 1000))))
    return prunable(aged, below, cutoff_ms)


def _record_cut(
    db: sqlite3.Connection, folder: Path, chosen: list[int], start: bytes, cutoff_ms: int
) -> tuple[int, int]:
    """Record where the chain goes on from, before anything is removed."""
    link = journal.last_link(folder, chosen, start)
    upto = chosen[-1]
    counted = [
        int(db.execute(f"SELECT count(*) FROM {table} WHERE file <= ?", (upto,)).fetchone()[0])
        for table in ("decisions", "amendments")
    ]
    # Rows of files an interrupted run already recorded are counted there.
    earlier = db.execute("SELECT coalesce(max(upto_file), 0) FROM journal_pruned").fetchone()[0]
    again = [
        int(db.execute(f"SELECT count(*) FROM {table} WHERE file <= ?", (earlier,)).fetchone()[0])
        for table in ("decisions", "amendments")
    ]
    decisions, amendments = counted[0] - again[0], counted[1] - again[1]
    db.execute(
        "INSERT INTO journal_pruned VALUES (?, ?, ?, ?, ?, ?)",
        (upto, link.hex(), decisions, amendments, cutoff_ms, int(time.time() * 1000)),
    )
    return decisions, amendments


def _newest_decision_ms(path: Path) -> int:
    """The time of the last decision in the file's last 64 KB (0 if none)."""
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - 65536))
        lines = file.read().split(b"\n")
    for line in reversed(lines[1:] if size > 65536 else lines):
        if line.startswith(b'["d",'):
            at = line[5 : line.find(b",", 5)]
            if at.isdigit():
                return int(at)
    return 0


def _delete_rows(db: sqlite3.Connection, upto: int, progress: Callable[[int], None] | None) -> None:
    """Every row pointing into files up to `upto`, a batch per transaction.
    Rows are in journal order, so the ones to go are the first ones: each
    batch finds them at the start of its table (decision_failures has no
    index by decision, so it is walked in its own order, up to the last
    decision that goes). Rows made before the documents stayed in the
    journal point into no file and stay."""
    first, last = db.execute(
        "SELECT min(seq), max(seq) FROM decisions WHERE file IS NOT NULL AND file <= ?", (upto,)
    ).fetchone()
    steps = [
        (
            "DELETE FROM decision_failures WHERE rowid IN (SELECT rowid FROM decision_failures"
            " WHERE seq BETWEEN ? AND ? LIMIT ?)",
            (first, last),
        ),
        (
            "DELETE FROM decisions WHERE seq IN (SELECT seq FROM decisions"
            " WHERE seq BETWEEN ? AND ? AND file IS NOT NULL ORDER BY seq LIMIT ?)",
            (first, last),
        ),
        (
            "DELETE FROM amendments WHERE n IN (SELECT n FROM amendments"
            " WHERE file <= ? ORDER BY n LIMIT ?)",
            (upto,),
        ),
    ]
    deleted = 0
    for statement, args in steps:
        if first is None and "amendments" not in statement:
            continue  # no decision rows left to delete
        while True:
            db.execute("BEGIN IMMEDIATE")
            count = db.execute(statement, (*args, BATCH)).rowcount
            db.execute("COMMIT")
            deleted += count
            if progress is not None:
                progress(deleted)
            if count < BATCH:
                break
            os.sched_yield()  # the indexer's turn, if it waits
