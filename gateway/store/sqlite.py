"""The embedded store: one SQLite file in WAL mode.

Every operation is one `BEGIN IMMEDIATE ... COMMIT` transaction, so a check and
its count stay atomic even when a second process opens the same file. The calls
are synchronous: on a local file they take microseconds, less than handing them
to a thread would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import pathlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from gateway.errors import StoreUnavailable, translated
from gateway.store.base import (
    FINISHED,
    CapCheck,
    CapCount,
    DeferredMessage,
    DeferStatus,
    Facts,
    FactsRequest,
    IdempotencyState,
    IdempotencyStatus,
    OptOutEntry,
)
from gateway.store.memory import is_blocked, longest_windows
from gateway.store.sendlog import SendLog

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE opt_outs (
    list TEXT NOT NULL,
    recipient TEXT NOT NULL,
    hint TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    note TEXT,
    PRIMARY KEY (list, recipient)
) WITHOUT ROWID;

CREATE TABLE sends (
    counter TEXT NOT NULL,
    send_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (counter, send_id)
) WITHOUT ROWID;
CREATE INDEX sends_by_time ON sends (counter, at_ms);

CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at_ms);

CREATE TABLE deferred (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    route TEXT NOT NULL,
    recipient TEXT NOT NULL,
    deliver_at_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    lease_until_ms INTEGER,
    result TEXT NOT NULL
);
CREATE INDEX deferred_by_status ON deferred (status, deliver_at_ms);
CREATE INDEX deferred_by_sender ON deferred (sender, deliver_at_ms);

CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"""

_DEFERRED_COLUMNS = (
    "id, sender, route, recipient, deliver_at_ms, created_at_ms,"
    " payload, status, lease_until_ms, result"
)

_translated = translated((sqlite3.Error,), lambda exc: StoreUnavailable(f"sqlite store: {exc}"))

# How long an operation waits for another connection's write lock (an
# operator's `gateway opt-out import`, or a tool holding the file) before
# the store counts as unavailable; and how often it tries again meanwhile.
BUSY_SECONDS = 5.0
_BUSY_POLL = 0.005

P = ParamSpec("P")
R = TypeVar("R")


def _operation(operation: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """A store operation (one transaction, wholly synchronous, rolled back when
    it fails): while the file is locked by another connection it is tried
    again from the event loop, which goes on serving meanwhile. SQLite's own
    busy wait would hold the whole process still; after BUSY_SECONDS the lock
    leaves as StoreUnavailable."""

    @functools.wraps(operation)
    async def patient(*args: P.args, **kwargs: P.kwargs) -> R:
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                return await operation(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in _BUSY or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(_BUSY_POLL)

    return _translated(patient)


_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

# A counter holding this many sends in a window is counted from a copy of its
# entries kept in memory (a SendLog) instead of by SQL, which reads each one.
MIRROR_FROM = 256


class SqliteStore:
    """State in one SQLite file. `synchronous_full` makes every commit survive a
    power loss; the default (NORMAL, in WAL mode) survives a killed process."""

    def __init__(self, path: pathlib.Path, *, synchronous_full: bool = False) -> None:
        self.path = path
        try:
            self._db = _open(path, synchronous_full)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite store {path}: {exc}") from exc
        # Busy counters' entries, as the file holds them after our last commit;
        # dropped whenever another connection has committed since.
        self._mirrors: dict[str, SendLog] = {}
        self._version: int | None = None
        self._reloads = 0

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a reader that later writes
        # could otherwise lose a race to another process and fail half-way.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- opt-outs and caps -------------------------------------------------

    @_operation
    async def fetch(
        self, request: FactsRequest, now_ms: int, *, count: bool, send_id: str
    ) -> Facts:
        with self._transaction() as db:
            self._check_mirrors(db)
            opted_out = _opted_out(db, request)
            caps = tuple(self._window(db, cap, now_ms) for cap in request.caps)
            counted = count and not is_blocked(request, opted_out, caps)
            if counted:
                _record(db, request.caps, now_ms, send_id)
        if counted:  # committed: the copies follow
            for counter, longest in longest_windows(request.caps).items():
                mirror = self._mirrors.get(counter)
                if mirror is not None:
                    mirror.expire(now_ms - longest)
                    mirror.add(send_id, now_ms)
        return Facts(opted_out=opted_out, caps=caps, counted=counted)

    @_operation
    async def refund(self, request: FactsRequest, send_id: str) -> None:
        counters = longest_windows(request.caps)
        with self._transaction() as db:
            self._check_mirrors(db)
            db.executemany(
                "DELETE FROM sends WHERE counter = ? AND send_id = ?",
                [(counter, send_id) for counter in counters],
            )
        for counter in counters:
            mirror = self._mirrors.get(counter)
            if mirror is not None:
                mirror.discard(send_id)

    def _check_mirrors(self, db: sqlite3.Connection) -> None:
        """Drop the copies if another connection (another process) has
        committed since this one last looked: it may have changed the sends."""
        (version,) = db.execute("PRAGMA data_version").fetchone()
        if version != self._version:
            self._mirrors.clear()
            self._version = version

    def _window(self, db: sqlite3.Connection, cap: CapCheck, now_ms: int) -> CapCount:
        mirror = self._mirrors.get(cap.counter)
        if mirror is not None:
            return mirror.window(cap, now_ms)
        found = _window_count(db, cap, now_ms)
        if found.count < MIRROR_FROM:
            return found
        rows = db.execute("SELECT send_id, at_ms FROM sends WHERE counter = ?", (cap.counter,))
        mirror = self._mirrors[cap.counter] = SendLog(rows)
        return mirror.window(cap, now_ms)

    @_operation
    async def opt_out_put(self, entry: OptOutEntry) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO opt_outs (list, recipient, hint, at_ms, source, note)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (entry.list, entry.recipient, entry.hint, entry.at_ms, entry.source, entry.note),
            )
            return cursor.rowcount == 1

    @_operation
    async def opt_out_delete(self, list_name: str, recipient: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM opt_outs WHERE list = ? AND recipient = ?", (list_name, recipient)
            )
            return cursor.rowcount == 1

    @_operation
    async def opt_out_get(self, list_name: str, recipient: str) -> OptOutEntry | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT list, recipient, hint, at_ms, source, note FROM opt_outs"
                " WHERE list = ? AND recipient = ?",
                (list_name, recipient),
            ).fetchone()
        return OptOutEntry(*row) if row is not None else None

    @_operation
    async def opt_out_page(
        self, list_name: str, cursor: str | None, limit: int
    ) -> tuple[list[OptOutEntry], str | None]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT list, recipient, hint, at_ms, source, note FROM opt_outs"
                " WHERE list = ? AND recipient > ? ORDER BY recipient LIMIT ?",
                (list_name, cursor or "", limit + 1),
            ).fetchall()
        page = [OptOutEntry(*row) for row in rows[:limit]]
        return page, page[-1].recipient if len(rows) > limit else None

    # -- idempotency -------------------------------------------------------

    @_operation
    async def idempotency_begin(
        self, key: str, fingerprint: str, now_ms: int, ttl_ms: int
    ) -> IdempotencyState:
        with self._transaction() as db:
            db.execute("DELETE FROM idempotency WHERE expires_at_ms <= ?", (now_ms,))
            row = db.execute(
                "SELECT fingerprint, response FROM idempotency WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO idempotency (key, fingerprint, response, expires_at_ms)"
                    " VALUES (?, ?, NULL, ?)",
                    (key, fingerprint, now_ms + ttl_ms),
                )
                return IdempotencyState(IdempotencyStatus.NEW)
        stored_fingerprint, response = row
        if stored_fingerprint != fingerprint:
            return IdempotencyState(IdempotencyStatus.CONFLICT)
        if response is None:
            return IdempotencyState(IdempotencyStatus.IN_FLIGHT)
        return IdempotencyState(IdempotencyStatus.DONE, json.loads(response))

    @_operation
    async def idempotency_finish(
        self, key: str, response: dict[str, Any], now_ms: int, ttl_ms: int
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE idempotency SET response = ?, expires_at_ms = ?"
                " WHERE key = ? AND response IS NULL AND expires_at_ms > ?",
                (json.dumps(response), now_ms + ttl_ms, key, now_ms),
            )

    @_operation
    async def idempotency_abandon(self, key: str, claim: str | None = None) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM idempotency WHERE key = ? AND response IS NULL", (key,))

    @_operation
    async def interrupted(self, prefix: str, response: dict[str, Any]) -> int:
        """Give every claim still in flight whose key starts with `prefix`
        `response`, and return how many: for the process that owns the folder
        as it starts, when any such claim is one its predecessor was cut off
        in. A repeat then gets that answer at once, rather than waiting to be
        told the key is still in flight."""
        with self._transaction() as db:
            update = (
                "UPDATE idempotency SET response = ?"
                " WHERE response IS NULL AND substr(key, 1, ?) = ?"
            )
            return db.execute(update, (json.dumps(response), len(prefix), prefix)).rowcount

    # -- deferred messages -------------------------------------------------

    @_operation
    async def defer_put(self, message: DeferredMessage) -> None:
        with self._transaction() as db:
            cancelled = db.execute(
                "SELECT 1 FROM deferred WHERE id = ? AND status = 'cancelled'", (message.id,)
            ).fetchone()
            if cancelled is None:  # a cancellation is final
                db.execute(
                    f"INSERT OR REPLACE INTO deferred ({_DEFERRED_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _deferred_row(message),
                )

    @_operation
    async def defer_withdraw(self, message: DeferredMessage) -> bool:
        gone = dataclasses.replace(message, status=DeferStatus.CANCELLED, payload={})
        with self._transaction() as db:
            db.execute(
                f"INSERT OR IGNORE INTO deferred ({_DEFERRED_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _deferred_row(gone),
            )
            db.execute(
                "UPDATE deferred SET status = 'cancelled', payload = '{}'"
                " WHERE id = ? AND status = 'pending'",
                (message.id,),
            )
            (status,) = db.execute(
                "SELECT status FROM deferred WHERE id = ?", (message.id,)
            ).fetchone()
        return status not in ("sending", "sent")

    @_operation
    async def defer_claim_due(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[DeferredMessage]:
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_DEFERRED_COLUMNS} FROM deferred"
                " WHERE (status = 'pending' AND deliver_at_ms <= :now)"
                " OR (status = 'sending' AND coalesce(lease_until_ms, 0) <= :now)"
                " ORDER BY deliver_at_ms, id LIMIT :limit",
                {"now": now_ms, "limit": max(limit, 0)},
            ).fetchall()
            claimed = [_deferred_message(row) for row in rows]
            for message in claimed:
                message.status = DeferStatus.SENDING
                message.lease_until_ms = now_ms + lease_ms
            db.executemany(
                "UPDATE deferred SET status = 'sending', lease_until_ms = ? WHERE id = ?",
                [(m.lease_until_ms, m.id) for m in claimed],
            )
        return claimed

    @_operation
    async def defer_get(self, message_id: str) -> DeferredMessage | None:
        with self._transaction() as db:
            return _deferred_by_id(db, message_id)

    @_operation
    async def defer_list(
        self,
        *,
        sender: str | None = None,
        status: DeferStatus | None = None,
        limit: int = 100,
        after: tuple[int, str] | None = None,
    ) -> list[DeferredMessage]:
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_DEFERRED_COLUMNS} FROM deferred"
                " WHERE (:sender IS NULL OR sender = :sender)"
                " AND (:status IS NULL OR status = :status)"
                " AND (:at IS NULL OR deliver_at_ms < :at OR (deliver_at_ms = :at AND id < :id))"
                " ORDER BY deliver_at_ms DESC, id DESC LIMIT :limit",
                {
                    "sender": sender,
                    "status": status,
                    "limit": max(limit, 0),
                    "at": after[0] if after else None,
                    "id": after[1] if after else None,
                },
            ).fetchall()
        return [_deferred_message(row) for row in rows]

    @_operation
    async def defer_finish(
        self, message_id: str, status: DeferStatus, result: dict[str, Any]
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE deferred SET status = ?, lease_until_ms = NULL, result = ?, payload = '{}'"
                " WHERE id = ?",
                (str(status), json.dumps(result), message_id),
            )

    @_operation
    async def defer_cancel(self, message_id: str) -> DeferredMessage | None:
        with self._transaction() as db:
            db.execute(
                "UPDATE deferred SET status = 'cancelled', payload = '{}'"
                " WHERE id = ? AND status = 'pending'",
                (message_id,),
            )
            return _deferred_by_id(db, message_id)

    @_operation
    async def defer_purge(self, due_before_ms: int, limit: int) -> int:
        finished = ",".join(f"'{status}'" for status in FINISHED)
        with self._transaction() as db:
            removed = db.execute(
                "DELETE FROM deferred WHERE id IN (SELECT id FROM deferred"
                f" WHERE status IN ({finished}) AND deliver_at_ms < ?"
                " ORDER BY deliver_at_ms, id LIMIT ?)",
                (due_before_ms, max(limit, 0)),
            ).rowcount
        return int(removed)

    @_operation
    async def defer_pending_count(self, sender: str) -> int:
        with self._transaction() as db:
            (count,) = db.execute(
                "SELECT count(*) FROM deferred WHERE sender = ? AND status = 'pending'",
                (sender,),
            ).fetchone()
        return int(count)

    # -- the rest ----------------------------------------------------------

    @_operation
    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        with self._transaction() as db:
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return bytes(row[0])
            value = make()
            db.execute("INSERT INTO secrets (name, value) VALUES (?, ?)", (name, value))
            return value

    async def reloads(self, *, bump: bool = False) -> int:
        # One process owns the data folder: the count need not leave it.
        self._reloads += bump
        return self._reloads

    @_operation
    async def ping(self) -> None:
        # The write lock, not a read: a file locked by another connection for
        # longer than BUSY_SECONDS refuses every message, so it is not ready.
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("ROLLBACK")

    @_operation
    async def close(self) -> None:
        self._db.close()


def _open(path: pathlib.Path, synchronous_full: bool) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and ended explicitly above.
    # check_same_thread=False: the store may be built before the event loop's
    # thread uses it; it is never used by two threads at once.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {'FULL' if synchronous_full else 'NORMAL'}")
        # No wait inside SQLite: `_operation` waits for a lock without
        # blocking the event loop (a short one absorbs a checkpoint's moment).
        db.execute("PRAGMA busy_timeout = 5")
        _migrate(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, path: pathlib.Path) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"sqlite store {path}: schema version {version} is newer than this"
                f" gateway understands ({SCHEMA_VERSION})"
            )
        if version == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _opted_out(db: sqlite3.Connection, request: FactsRequest) -> frozenset[str]:
    names = [name for name, _ in request.opt_out_lists]
    if not names:
        return frozenset()
    rows = db.execute(
        f"SELECT list FROM opt_outs WHERE recipient = ? AND list IN ({','.join('?' * len(names))})",
        (request.recipient, *names),
    ).fetchall()
    return frozenset(row[0] for row in rows)


def _window_count(db: sqlite3.Connection, cap: CapCheck, now_ms: int) -> CapCount:
    """Sends in [now - per, now]; when full, the first instant with room (as
    `SendLog.window` counts them)."""
    window = (cap.counter, now_ms - cap.per_ms, now_ms)
    in_window = "FROM sends WHERE counter = ? AND at_ms BETWEEN ? AND ?"
    (count,) = db.execute(f"SELECT count(*) {in_window}", window).fetchone()
    if count < cap.limit:
        return CapCount(count)
    row = db.execute(
        f"SELECT at_ms {in_window} ORDER BY at_ms LIMIT 1 OFFSET ?", (*window, count - cap.limit)
    ).fetchone()
    return CapCount(count, row[0] + cap.per_ms + 1 if row is not None else None)


def _record(db: sqlite3.Connection, caps: tuple[CapCheck, ...], now_ms: int, send_id: str) -> None:
    for counter, longest in longest_windows(caps).items():
        # Entries older than the longest window can no longer be seen by any
        # window ending now or later; dropping them keeps the table bounded.
        db.execute("DELETE FROM sends WHERE counter = ? AND at_ms < ?", (counter, now_ms - longest))
        db.execute(
            "INSERT OR REPLACE INTO sends (counter, send_id, at_ms) VALUES (?, ?, ?)",
            (counter, send_id, now_ms),
        )


def _deferred_by_id(db: sqlite3.Connection, message_id: str) -> DeferredMessage | None:
    row = db.execute(
        f"SELECT {_DEFERRED_COLUMNS} FROM deferred WHERE id = ?", (message_id,)
    ).fetchone()
    return _deferred_message(row) if row is not None else None


def _deferred_row(m: DeferredMessage) -> tuple[Any, ...]:
    return (
        m.id,
        m.sender,
        m.route,
        m.recipient,
        m.deliver_at_ms,
        m.created_at_ms,
        json.dumps(m.payload),
        str(m.status),
        m.lease_until_ms,
        json.dumps(m.result),
    )


def _deferred_message(row: tuple[Any, ...]) -> DeferredMessage:
    id_, sender, route, recipient, deliver_at, created_at, payload, status, lease, result = row
    return DeferredMessage(
        id=id_,
        sender=sender,
        route=route,
        recipient=recipient,
        deliver_at_ms=deliver_at,
        created_at_ms=created_at,
        payload=json.loads(payload),
        status=DeferStatus(status),
        lease_until_ms=lease,
        result=json.loads(result),
    )
