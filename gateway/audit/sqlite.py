"""The trail in SQLite (WAL): one row per decision, its failures indexed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.audit.base import DecisionQuery, failures
from gateway.audit.checkpoint import Checkpointer
from gateway.errors import AuditUnavailable, translated_sync
from gateway.jsonio import dumps

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
"""


class _Batch:
    """The rows of the writes of one event-loop turn, and who waits for them."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, str, str, str, str]] = []
        self.amendments: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, str]] = []  # rule, code, decision id
        self.waiting: list[asyncio.Future[None]] = []

    @property
    def rows(self) -> int:
        return len(self.records) + len(self.amendments)

    @property
    def empty(self) -> bool:
        return not (self.records or self.amendments or self.waiting)

    def add_record(self, record: dict[str, Any], at_ms: int) -> None:
        decision_id = record["decision_id"]
        doc = dumps(record).decode("utf-8", "surrogateescape")
        self.records.append(
            (decision_id, at_ms, record["sender"], record["decision"], record["recipient"], doc)
        )
        self.failures += [(rule, code, decision_id) for rule, code in set(failures(record))]

    def add_amendment(self, decision_id: str, changes: dict[str, Any]) -> None:
        doc = dumps(changes).decode("utf-8", "surrogateescape")
        self.amendments.append((decision_id, doc))
        self.failures += [(rule, code, decision_id) for rule, code in set(failures(changes))]


_T = TypeVar("_T")
_INLINE_ROWS = 2  # a group this small, alone, is written on the event loop
AMEND_DELAY = 0.05  # seconds an amendment may wait for a group to ride with
_BUSY_MS = 5000  # how long the writer thread waits for a database someone else holds


def _settle(batch: _Batch, error: BaseException | None) -> None:
    """Wake the callers waiting for `batch`. An amendment nobody waits for is
    lost with a failed batch; its record was durable before the message went
    out."""
    for done in batch.waiting:
        if done.done():  # its caller went away
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


# sqlite3's errors become AuditUnavailable here and nowhere else.
_translated = translated_sync((sqlite3.Error,), lambda exc: AuditUnavailable(f"audit trail: {exc}"))


class SqliteTrail:
    """Writes are group-committed: every append and amendment that arrives
    while the previous transaction is being written goes into the next one,
    and each caller resumes only once its transaction is committed (durable
    before send). Transactions run on a writer thread of their own (SQLite
    lets go of the interpreter while it writes), so the event loop serves
    other requests meanwhile; reads go through that thread too, in order.
    A group of one or two rows with nothing else in flight (light load) is
    written on the event loop instead: the hop to the thread and back would
    cost its caller more than the write."""

    def __init__(self, path: Path, *, synchronous_full: bool = False) -> None:
        self._db = self._open(path, synchronous_full)
        self._batch = _Batch()
        self._writing: asyncio.Future[None] | None = None  # the transaction in flight
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._closed = False
        self._lock = threading.Lock()  # one user of the connection at a time
        self._soon = False  # a write is due at the end of this turn
        self._later: asyncio.TimerHandle | None = None  # ... or for amendments alone
        self._checkpointer = Checkpointer(path)

    @staticmethod
    @_translated
    def _open(path: Path, synchronous_full: bool) -> sqlite3.Connection:
        db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=_BUSY_MS / 1000
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if synchronous_full else 'NORMAL'}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's thread does it
        db.executescript(_SCHEMA)
        return db

    async def append(self, record: dict[str, Any], at_ms: int) -> None:
        self._queue().add_record(record, at_ms)
        await self._wait()

    async def update(self, decision_id: str, changes: dict[str, Any]) -> None:
        self._queue().add_amendment(decision_id, changes)
        await self._wait()

    def amend(self, decision_id: str, changes: dict[str, Any]) -> None:
        self._queue(soon=False).add_amendment(decision_id, changes)

    def _queue(self, *, soon: bool = True) -> _Batch:
        """The group being gathered. Someone waits for it (`soon`): it is
        written at the end of this turn, so that the writes of the rest of the
        turn join it. Nobody waits (an amendment): it rides with the next
        group, or goes alone within AMEND_DELAY, saving a commit per message
        when groups are small."""
        if self._writing is None:
            loop = asyncio.get_running_loop()
            if soon and not self._soon:
                loop.call_soon(self._write_next)
                self._soon = True
            elif not soon and self._later is None and self._batch.empty:
                self._later = loop.call_later(AMEND_DELAY, self._write_next)
        return self._batch

    async def _wait(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.waiting.append(done)
        await done

    def _write_next(self) -> None:
        self._soon = False
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._writing is not None or self._batch.empty:
            return
        batch, self._batch = self._batch, _Batch()
        if self._closed:
            _settle(batch, AuditUnavailable("audit trail: closed"))
            return
        if batch.rows <= _INLINE_ROWS and self._lock.acquire(blocking=False):
            try:
                written = self._write_here(batch)
            finally:
                self._lock.release()
            if written:
                return
        loop = asyncio.get_running_loop()
        writing = loop.run_in_executor(self._thread, self._locked, self._transaction, batch)
        writing.add_done_callback(lambda _: self._written(batch, writing))
        self._writing = writing

    def _locked(self, use: Callable[..., _T], *args: Any) -> _T:
        with self._lock:
            return use(*args)

    def _written(self, batch: _Batch, writing: asyncio.Future[None]) -> None:
        self._writing = None
        _settle(batch, writing.exception())
        self._write_next()  # what arrived meanwhile

    async def _flush(self) -> None:
        """Until everything queued so far is written (or failed)."""
        while self._writing is not None or not self._batch.empty:
            if self._writing is None:
                self._write_next()
                continue
            with contextlib.suppress(AuditUnavailable):
                await asyncio.shield(self._writing)

    async def _read(self, read: Callable[..., _T], *args: Any) -> _T:
        """`read(*args)` on the writer thread, after what was queued before it."""
        await self._flush()
        if self._closed:
            raise AuditUnavailable("audit trail: closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._locked, read, *args
        )

    def _write_here(self, batch: _Batch) -> bool:
        """Write `batch` on the event loop, unless someone else holds the
        database: waiting for it here would stop every request (False: the
        writer thread waits instead)."""
        try:
            if not self._begin_unless_busy():
                return False
            self._transaction(batch, begun=True)
        except AuditUnavailable as exc:
            _settle(batch, exc)
        else:
            _settle(batch, None)
        return True

    @_translated
    def _begin_unless_busy(self) -> bool:
        db = self._db
        db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            raise
        finally:
            db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        return True

    @_translated
    def _transaction(self, batch: _Batch, *, begun: bool = False) -> None:
        """One transaction, a few statements: the rows of every write of the turn."""
        db = self._db
        if not begun:
            db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO decisions (id, at_ms, sender, decision, recipient, doc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                batch.records,
            )
            # Appended, never rewritten: the first record stays as it was
            # written, and readers merge the amendments in order.
            db.executemany("INSERT INTO amendments (id, doc) VALUES (?, ?)", batch.amendments)
            db.executemany(
                "INSERT INTO decision_failures SELECT seq, ?, ? FROM decisions WHERE id = ?",
                batch.failures,
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        return await self._read(self._get, decision_id)

    @_translated
    def _get(self, decision_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT doc FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        return None if row is None else self._merged([json.loads(row[0])])[0]

    def _merged(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_id = {record["decision_id"]: record for record in records}
        if by_id:
            marks = ",".join("?" * len(by_id))
            sql = f"SELECT id, doc FROM amendments WHERE id IN ({marks}) ORDER BY n"
            for decision_id, doc in self._db.execute(sql, list(by_id)):
                by_id[decision_id].update(json.loads(doc))
        return records

    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        return await self._read(self._query, query)

    @_translated
    def _query(self, q: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        where, args = _where(q)
        sql = f"SELECT seq, doc FROM decisions {where} ORDER BY seq DESC LIMIT ?"
        rows = self._db.execute(sql, [*args, q.limit + 1]).fetchall()
        more: int | None = rows[q.limit - 1][0] if len(rows) > q.limit else None
        return self._merged([json.loads(doc) for _, doc in rows[: q.limit]]), more

    async def ping(self) -> None:
        await self._read(self._ping)

    @_translated
    def _ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        if self._closed:
            return
        await self._flush()  # amendments still queued
        await self._read(self._db.close)
        self._closed = True
        self._thread.shutdown()
        self._checkpointer.stop()


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
