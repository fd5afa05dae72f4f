"""The trail's index: the journal's entries in SQLite (WAL), one row per
decision, its failures and amendments indexed, for auditors' queries.

Only the indexer process writes it (gateway/audit/indexer.py); the gateway
reads it. Each transaction adds a run of journal lines and moves the stored
position past them, so an entry is indexed exactly once, even with two
indexers at work on the same journal (an old one finishing while a new
process starts): each takes the position inside its transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.audit import journal
from gateway.audit.base import DecisionQuery, failures
from gateway.audit.journal import Position
from gateway.errors import AuditUnavailable, translated_sync

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    at_ms INTEGER NOT NULL,
    sender TEXT NOT NULL,
    decision TEXT NOT NULL,
    recipient TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_recipient ON decisions (recipient, seq);
CREATE INDEX IF NOT EXISTS decisions_sender ON decisions (sender, seq);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at_ms);
CREATE TABLE IF NOT EXISTS decision_failures (
    seq INTEGER NOT NULL REFERENCES decisions (seq),
    rule TEXT NOT NULL,
    code TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_rule ON decision_failures (rule, seq);
CREATE INDEX IF NOT EXISTS failures_code ON decision_failures (code, seq);
CREATE TABLE IF NOT EXISTS amendments (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS amendments_id ON amendments (id, n);
CREATE TABLE IF NOT EXISTS journal_position (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    file INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
INSERT OR IGNORE INTO journal_position VALUES (1, 0, 0);
"""

BUSY_MS = 2000  # how long a statement waits for a database someone else holds
_SLICE = 2  # journal lines inserted between two chances for others to run
_LIGHT_LINES = 128  # a run this short pauses between slices ...
_PAUSE = 0.0001  # ... for this long (seconds)

# sqlite3's errors, and the journal's when the index reads it, become
# AuditUnavailable here and nowhere else.
translated = translated_sync(
    (sqlite3.Error, OSError), lambda exc: AuditUnavailable(f"audit trail: {exc}")
)


@translated
def connect(path: Path, *, synchronous_full: bool = False) -> sqlite3.Connection:
    """A connection to the index, its tables created if need be."""
    db = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_MS / 1000
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if synchronous_full else 'NORMAL'}")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the indexer's Checkpointer does it
    db.executescript(_SCHEMA)
    return db


@translated
def position(db: sqlite3.Connection) -> Position:
    """How far into the journal the index has got."""
    row = db.execute("SELECT file, offset FROM journal_position").fetchone()
    return int(row[0]), int(row[1])


def folder_of(path: Path) -> Path:
    """The journal's folder for the index at `path` (audit.db -> audit.journal)."""
    return path.with_suffix(".journal")


# -- building ------------------------------------------------------------


class Builder:
    """Adds the journal's lines to the index, in order, from where it stands."""

    def __init__(self, db: sqlite3.Connection, folder: Path) -> None:
        self._db = db
        self._folder = folder

    @translated
    def build_to(self, target: Position) -> Position:
        """Index the journal up to `target`: the files before its file whole
        (no more entries go into them), that file up to its offset. Files
        the index then holds whole are removed. Returns where it stands."""
        while True:
            at = self._step(target)
            if at is None:
                break
        reached = position(self._db)
        for number in journal.file_numbers(self._folder):
            if number < reached[0]:
                journal.path_of(self._folder, number).unlink(missing_ok=True)
        return reached

    def _step(self, target: Position) -> Position | None:
        """One transaction: the next run of lines, or the move to the next
        file; None once the index is at `target`."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            number, offset = at = position(db)
            if at >= target:
                db.execute("ROLLBACK")
                return None
            stop = target[1] if number == target[0] else None
            path = journal.path_of(self._folder, number)
            run = journal.next_lines(path, offset, stop)
            if run is not None:
                lines, end = run
                try:
                    self._insert(lines)
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    raise AuditUnavailable(
                        f"audit trail: {path} holds a line after byte {offset} that is not a"
                        f" trail entry ({exc!r}); move that file aside to go on"
                    ) from None
                at = (number, end)
            elif number == target[0]:  # nothing more up to the target
                at = target
            else:  # this file is done: on to the next one there is
                later = [n for n in journal.file_numbers(self._folder) if n > number]
                at = (min(later), 0) if later and (min(later), 0) < target else target
            db.execute("UPDATE journal_position SET file = ?, offset = ?", at)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return at

    def _insert(self, lines: bytes) -> None:
        """The entries of `lines`, a few at a time, giving the processor
        away in between: on a small machine a burst of this work held up
        the Redis and upstream replies of requests in flight. Between the
        slices of a light run it sleeps a moment (that disturbed requests
        least); a heavy run only yields, so the index keeps up at any rate."""
        entries = lines.splitlines()
        light = len(entries) <= _LIGHT_LINES
        for start in range(0, len(entries), _SLICE):
            self._insert_rows(entries[start : start + _SLICE])
            if light:
                time.sleep(_PAUSE)
            else:
                os.sched_yield()

    def _insert_rows(self, lines: list[bytes]) -> None:
        records, amendments, failed = [], [], []
        for line in lines:
            entry = orjson.loads(line)
            if entry[0] == "d":
                record = entry[2]
                decision_id = record["decision_id"]
                # The document as the journal has it, without encoding it again.
                doc = line[line.index(b",", 5) + 1 : -1].decode("utf-8")
                row = (decision_id, entry[1], record["sender"], record["decision"])
                records.append((*row, record["recipient"], doc))
            else:
                decision_id, record = entry[1], entry[2]
                amendments.append((decision_id, orjson.dumps(record).decode("utf-8")))
            failed += [(rule, code, decision_id) for rule, code in set(failures(record))]
        db = self._db
        db.executemany(
            "INSERT OR IGNORE INTO decisions (id, at_ms, sender, decision, recipient, doc)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            records,
        )
        # Appended, never rewritten: the first record stays as it was
        # written, and readers merge the amendments in order.
        db.executemany("INSERT INTO amendments (id, doc) VALUES (?, ?)", amendments)
        db.executemany(
            "INSERT INTO decision_failures SELECT seq, ?, ? FROM decisions WHERE id = ?", failed
        )


# -- reading -------------------------------------------------------------


@translated
def get(db: sqlite3.Connection, decision_id: str) -> dict[str, Any] | None:
    row = db.execute("SELECT doc FROM decisions WHERE id = ?", (decision_id,)).fetchone()
    return None if row is None else _merged(db, [json.loads(row[0])])[0]


@translated
def query(db: sqlite3.Connection, q: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
    where, args = _where(q)
    sql = f"SELECT seq, doc FROM decisions {where} ORDER BY seq DESC LIMIT ?"
    rows = db.execute(sql, [*args, q.limit + 1]).fetchall()
    more: int | None = rows[q.limit - 1][0] if len(rows) > q.limit else None
    return _merged(db, [json.loads(doc) for _, doc in rows[: q.limit]]), more


@translated
def ping(db: sqlite3.Connection) -> None:
    db.execute("SELECT 1").fetchone()


def _merged(db: sqlite3.Connection, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {record["decision_id"]: record for record in records}
    if by_id:
        marks = ",".join("?" * len(by_id))
        sql = f"SELECT id, doc FROM amendments WHERE id IN ({marks}) ORDER BY n"
        for decision_id, doc in db.execute(sql, list(by_id)):
            by_id[decision_id].update(json.loads(doc))
    return records


def _where(q: DecisionQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("recipient", q.recipient),
        ("sender", q.sender),
        ("decision", q.decision),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    bounds: tuple[tuple[str, int | None], ...] = (
        ("seq < ?", q.before),
        ("at_ms >= ?", q.since_ms),
        ("at_ms < ?", q.until_ms),
    )
    for sql, bound in bounds:
        if bound is not None:
            clauses.append(sql)
            args.append(bound)
    for column, value in (("rule", q.rule), ("code", q.code)):
        if value is not None:
            clauses.append(
                f"EXISTS (SELECT 1 FROM decision_failures f WHERE f.seq = decisions.seq"
                f" AND f.{column} = ?)"
            )
            args.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args
