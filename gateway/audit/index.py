"""The trail's index: the journal's entries in SQLite (WAL), for auditors'
queries. One row per decision and per amendment, with what queries filter on
and where the document is in the journal (file, offset, length); the
documents themselves stay in the journal's files.

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
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from gateway.audit import journal
from gateway.audit.base import DecisionQuery, damaged, failures, readable
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
    doc TEXT NOT NULL,  -- empty: the document is in the journal, at file/offset/length
    file INTEGER,
    offset INTEGER,
    length INTEGER
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
    doc TEXT NOT NULL,
    file INTEGER,
    offset INTEGER,
    length INTEGER
);
CREATE INDEX IF NOT EXISTS amendments_id ON amendments (id, n);
CREATE TABLE IF NOT EXISTS journal_position (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    file INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
INSERT OR IGNORE INTO journal_position VALUES (1, 0, 0);
-- Retention (gateway/audit/retention.py): journal files up to upto_file were
-- removed, with their rows; `link` is the chain's link before the next file.
CREATE TABLE IF NOT EXISTS journal_pruned (
    upto_file INTEGER PRIMARY KEY,
    link TEXT NOT NULL,
    decisions INTEGER NOT NULL,
    amendments INTEGER NOT NULL,
    before_ms INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
"""

BUSY_MS = 2000  # how long a statement waits for a database someone else holds
_SLICE = 2  # journal lines inserted between two chances for others to run ...
_LIGHT_LINES = 128  # ... in a run this short; a longer one goes in at once

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
    _add_journal_columns(db)
    return db


def _add_journal_columns(db: sqlite3.Connection) -> None:
    """An index made before documents stayed in the journal gets the columns
    that say where they are (its own rows keep their documents)."""
    for table in ("decisions", "amendments"):
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in ("file", "offset", "length"):
            if column not in have:
                try:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):  # another process was first
                        raise


@translated
def position(db: sqlite3.Connection) -> Position:
    """How far into the journal the index has got."""
    row = db.execute("SELECT file, offset FROM journal_position").fetchone()
    return int(row[0]), int(row[1])


@translated
def pruned(db: sqlite3.Connection) -> tuple[int, bytes, int] | None:
    """Where retention left the journal: the last file it removed, the link
    the chain goes on from, and how many decisions it removed in all; None
    if it never ran (or the index predates it)."""
    try:
        row = db.execute(
            "SELECT upto_file, link, (SELECT sum(decisions) FROM journal_pruned)"
            " FROM journal_pruned ORDER BY upto_file DESC LIMIT 1"
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # read-only, on an index made before retention
            return None
        raise
    return None if row is None else (int(row[0]), bytes.fromhex(row[1]), int(row[2]))


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
        (no more entries go into them), that file up to its offset. Returns
        where it stands. The files stay: they hold the documents."""
        while self._step(target) is not None:
            pass
        return position(self._db)

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
                    self._insert(lines, number, offset)
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

    def _insert(self, lines: bytes, number: int, offset: int) -> None:
        """The entries of `lines` (found at `offset` of file `number`).

        A light run goes in a few at a time, giving the processor away in
        between: on a small machine a burst of this work held up the Redis
        and upstream replies of requests in flight. It yields rather than
        sleeps: a 0.1 ms sleep tripled the processor time per entry (70
        against 26 us) and shortened no request. A heavy run (the index is
        behind) goes in at once: yielding every two lines, the indexer waited
        a round of the scheduler for each pair while the gateway's workers
        kept both cores busy, and fell further behind."""
        entries = []
        for line in lines.splitlines(keepends=True):
            entries.append((line, offset, len(line)))
            offset += len(line)
        if len(entries) > _LIGHT_LINES:
            self._insert_rows(number, entries)
            return
        for start in range(0, len(entries), _SLICE):
            self._insert_rows(number, entries[start : start + _SLICE])
            os.sched_yield()

    def _insert_rows(self, number: int, lines: list[tuple[bytes, int, int]]) -> None:
        """The rows of some entries; their documents stay in the journal, the
        index says where (file, offset, length)."""
        records, amendments, failed = [], [], []
        for line, offset, length in lines:
            entry = orjson.loads(line)
            where = (number, offset, length)
            if entry[0] == "d":
                record = entry[2]
                decision_id = record["decision_id"]
                row = (decision_id, entry[1], record["sender"], record["decision"])
                records.append((*row, record["recipient"], *where))
            else:
                decision_id, record = entry[1], entry[2]
                amendments.append((decision_id, *where))
            failed += [(rule, code, decision_id) for rule, code in set(failures(record))]
        db = self._db
        db.executemany(
            "INSERT OR IGNORE INTO decisions"
            " (id, at_ms, sender, decision, recipient, doc, file, offset, length)"
            " VALUES (?, ?, ?, ?, ?, '', ?, ?, ?)",
            records,
        )
        # Appended, never rewritten: the first record stays as it was
        # written, and readers merge the amendments in order.
        db.executemany(
            "INSERT INTO amendments (id, doc, file, offset, length) VALUES (?, '', ?, ?, ?)",
            amendments,
        )
        db.executemany(
            "INSERT INTO decision_failures SELECT seq, ?, ? FROM decisions WHERE id = ?", failed
        )


# -- reading -------------------------------------------------------------


Row = tuple[str, int | None, int | None, int | None]  # doc, file, offset, length


def loaded(doc: object) -> dict[str, Any] | None:
    """The document an index row holds, or None if it holds no JSON object."""
    if not isinstance(doc, str | bytes):
        return None
    try:
        document = json.loads(doc)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


class _Documents:
    """Documents by their rows: read from the journal file a row names, else
    in the row (an index made before documents stayed in the journal); None
    for one that cannot be read (a damaged index)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._files: dict[int, BinaryIO] = {}

    def __enter__(self) -> _Documents:
        return self

    def __exit__(self, *exc: object) -> None:
        for file in self._files.values():
            file.close()

    def load(self, row: Row) -> dict[str, Any] | None:
        doc, number, offset, length = row
        # The indexer's rows hold no document: for a row that points into the
        # journal, the chained entry is the record, whatever else the row holds.
        if number is None or offset is None or length is None:
            return loaded(doc)
        if offset < 0 or length <= 0:
            return None
        file = self._file(number)
        file.seek(offset)
        try:
            document = orjson.loads(file.read(length))[2]
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
            return None
        return document if isinstance(document, dict) else None

    def _file(self, number: int) -> BinaryIO:
        file = self._files.get(number)
        if file is None:
            path = journal.path_of(self._folder, number)
            try:
                file = self._files[number] = path.open("rb")
            except FileNotFoundError:
                raise AuditUnavailable(
                    f"audit trail: the journal file {path} is missing; it holds documents"
                    " the index points to"
                ) from None
        return file


@translated
def get(db: sqlite3.Connection, folder: Path, decision_id: str) -> dict[str, Any] | None:
    sql = "SELECT id, doc, file, offset, length FROM decisions WHERE id = ?"
    row = db.execute(sql, (decision_id,)).fetchone()
    if row is None:
        return None
    with _Documents(folder) as documents:
        return _merged(db, documents, [readable(row[0], documents.load(row[1:]))])[0]


@translated
def query(
    db: sqlite3.Connection, folder: Path, q: DecisionQuery
) -> tuple[list[dict[str, Any]], int | None]:
    where, args = _where(q)
    sql = (
        f"SELECT seq, id, doc, file, offset, length FROM decisions {where}"
        " ORDER BY seq DESC LIMIT ?"
    )
    rows = db.execute(sql, [*args, q.limit + 1]).fetchall()
    more: int | None = rows[q.limit - 1][0] if len(rows) > q.limit else None
    with _Documents(folder) as documents:
        records = [readable(row[1], documents.load(row[2:])) for row in rows[: q.limit]]
        return _merged(db, documents, records), more


@translated
def numbered(db: sqlite3.Connection, folder: Path, q: DecisionQuery) -> list[tuple[int, Any]]:
    """Up to `q.limit` matching records, newest first, each with its sequence
    number: what a reader merging several trails pages each one by."""
    where, args = _where(q)
    sql = (
        f"SELECT seq, id, doc, file, offset, length FROM decisions {where}"
        " ORDER BY seq DESC LIMIT ?"
    )
    rows = db.execute(sql, [*args, q.limit]).fetchall()
    with _Documents(folder) as documents:
        records = [readable(row[1], documents.load(row[2:])) for row in rows]
        merged = _merged(db, documents, records)
    return [(row[0], record) for row, record in zip(rows, merged, strict=True)]


@translated
def ping(db: sqlite3.Connection) -> None:
    db.execute("SELECT 1").fetchone()


def _merged(
    db: sqlite3.Connection, documents: _Documents, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    by_id = {record["decision_id"]: record for record in records}
    if by_id:
        marks = ",".join("?" * len(by_id))
        sql = (
            f"SELECT id, doc, file, offset, length FROM amendments WHERE id IN ({marks}) ORDER BY n"
        )
        for decision_id, doc, number, offset, length in db.execute(sql, list(by_id)):
            changes = documents.load((doc, number, offset, length))
            by_id[decision_id].update(damaged(decision_id) if changes is None else changes)
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
