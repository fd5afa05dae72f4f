"""The trail in SQLite (WAL): one row per decision, its failures indexed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from gateway.audit.base import DecisionQuery, failures
from gateway.errors import AuditUnavailable

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
"""

P = ParamSpec("P")
T = TypeVar("T")


def _translated(fn: Callable[P, T]) -> Callable[P, T]:
    """sqlite3's errors become AuditUnavailable here and nowhere else."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit trail: {exc}") from exc

    return wrapper


class SqliteTrail:
    def __init__(self, path: Path, *, synchronous_full: bool = False) -> None:
        self._db = self._open(path, synchronous_full)

    @staticmethod
    @_translated
    def _open(path: Path, synchronous_full: bool) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if synchronous_full else 'NORMAL'}")
        db.executescript(_SCHEMA)
        return db

    async def append(self, record: dict[str, Any], at_ms: int) -> None:
        self._append(record, at_ms)

    @_translated
    def _append(self, record: dict[str, Any], at_ms: int) -> None:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO decisions (id, at_ms, sender, decision, recipient, doc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record["decision_id"],
                    at_ms,
                    record["sender"],
                    record["decision"],
                    record["recipient"],
                    json.dumps(record, ensure_ascii=False),
                ),
            )
            rows = [(cur.lastrowid, rule, code) for rule, code in set(failures(record))]
            self._db.executemany("INSERT INTO decision_failures VALUES (?, ?, ?)", rows)

    async def update(self, decision_id: str, changes: dict[str, Any]) -> None:
        self._update(decision_id, changes)

    @_translated
    def _update(self, decision_id: str, changes: dict[str, Any]) -> None:
        with self._db:
            row = self._db.execute(
                "SELECT seq, doc FROM decisions WHERE id = ?", (decision_id,)
            ).fetchone()
            if row is None:
                return
            record = json.loads(row[1]) | changes
            self._db.execute(
                "UPDATE decisions SET doc = ?, decision = ? WHERE seq = ?",
                (json.dumps(record, ensure_ascii=False), record["decision"], row[0]),
            )
            self._db.execute("DELETE FROM decision_failures WHERE seq = ?", (row[0],))
            rows = [(row[0], rule, code) for rule, code in set(failures(record))]
            self._db.executemany("INSERT INTO decision_failures VALUES (?, ?, ?)", rows)

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        return self._get(decision_id)

    @_translated
    def _get(self, decision_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT doc FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        return self._query(query)

    @_translated
    def _query(self, q: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        where, args = _where(q)
        sql = f"SELECT seq, doc FROM decisions {where} ORDER BY seq DESC LIMIT ?"
        rows = self._db.execute(sql, [*args, q.limit + 1]).fetchall()
        more: int | None = rows[q.limit - 1][0] if len(rows) > q.limit else None
        return [json.loads(doc) for _, doc in rows[: q.limit]], more

    async def ping(self) -> None:
        self._ping()

    @_translated
    def _ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        self._db.close()


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
