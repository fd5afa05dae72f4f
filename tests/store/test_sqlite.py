"""What only the SQLite store promises: durability, its schema, its error boundary."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.errors import StoreUnavailable
from gateway.store import sqlite as sqlite_store
from gateway.store.base import (
    CapCheck,
    CapCount,
    DeferredMessage,
    FactsRequest,
    IdempotencyStatus,
    OptOutEntry,
)
from gateway.store.sqlite import MIRROR_FROM, SCHEMA_VERSION, SqliteStore

from .test_contract import ALICE, DAY, HOUR, T, ask, cap, held, peek, send


async def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    entry = OptOutEntry("global", ALICE, "+1212555****", T, "keyword")
    await store.opt_out_put(entry)
    await send(store, ask(cap(5)), T, "s1")
    await store.defer_put(held("m1", T + HOUR))
    await store.idempotency_begin("acme:k1", "fp1", T, 60_000)
    await store.idempotency_finish("acme:k1", {"status": 202}, T, 60_000)
    await store.close()

    again = SqliteStore(path)
    try:
        assert await again.opt_out_get("global", ALICE) == entry
        assert (await peek(again, ask(cap(5)), T + 1)).caps[0].count == 1
        assert await again.defer_get("m1") == held("m1", T + HOUR)
        state = await again.idempotency_begin("acme:k1", "fp1", T + 1, 60_000)
        assert (state.status, state.response) == (IdempotencyStatus.DONE, {"status": 202})
    finally:
        await again.close()


@pytest.mark.parametrize(("full", "level"), [(False, 1), (True, 2)])
async def test_wal_mode_and_synchronous_level(tmp_path: Path, full: bool, level: int) -> None:
    store = SqliteStore(tmp_path / "state.db", synchronous_full=full)
    try:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (level,)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        SqliteStore(path)


async def test_old_sends_are_dropped_when_a_counter_counts(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        await send(store, ask(cap(5)), T, "old")
        await send(store, ask(cap(5, rule="other")), T, "elsewhere")
        await send(store, ask(cap(5)), T + DAY + 1, "new")
        rows = store._db.execute("SELECT send_id FROM sends ORDER BY send_id").fetchall()
        assert rows == [("elsewhere",), ("new",)]
    finally:
        await store.close()


async def test_driver_errors_become_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SqliteStore(tmp_path / "missing-folder" / "state.db")
    store = SqliteStore(tmp_path / "state.db")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.fetch(FactsRequest(ALICE), T, count=True, send_id="s1")


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"not a database, just bytes " * 100)
    with pytest.raises(StoreUnavailable):
        SqliteStore(path)


async def test_a_locked_file_is_waited_for_without_holding_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds the write lock (an operator's tool): the
    operation waits for it while the event loop goes on serving, goes through
    once the lock is released, and gives up as StoreUnavailable after
    BUSY_SECONDS."""
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        waiting = asyncio.create_task(send(store, ask(cap(5)), T, "s1"))
        ticks = 0
        for _ in range(20):  # the loop runs other work while the send waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not waiting.done()
        holder.execute("ROLLBACK")
        assert (await asyncio.wait_for(waiting, 5)).counted
        holder.execute("BEGIN EXCLUSIVE")
        monkeypatch.setattr(sqlite_store, "BUSY_SECONDS", 0.2)
        with pytest.raises(StoreUnavailable, match="database is locked"):
            await send(store, ask(cap(5)), T, "s2")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await store.close()


async def test_a_file_locked_for_writing_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock that refuses every message makes /readyz say so: ping takes the
    write lock, not a read, which another connection's lock allows."""
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    holder = sqlite3.connect(path, isolation_level=None)
    monkeypatch.setattr(sqlite_store, "BUSY_SECONDS", 0.2)
    try:
        await store.ping()
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="database is locked"):
            await store.ping()
        holder.execute("ROLLBACK")
        await store.ping()
    finally:
        holder.close()
        await store.close()


def test_two_connections_on_one_file_count_atomically(tmp_path: Path) -> None:
    """Two stores on one file, each driven from its own thread: a cap of 5 holds."""
    path = tmp_path / "state.db"
    SqliteStore(path)._db.close()  # create the schema up front
    counted: list[bool] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        async def run() -> None:
            store = SqliteStore(path)
            try:
                for i in range(40):
                    facts = await send(store, ask(cap(5)), T, f"{name}-{i}")
                    with lock:
                        counted.append(facts.counted)
            finally:
                await store.close()

        asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(counted) == 80
    assert counted.count(True) == 5


async def test_a_deferred_message_keeps_its_lease_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.defer_put(held("m1", T))
    [claimed] = await store.defer_claim_due(T, 1, 1_000)
    await store.close()

    again = SqliteStore(path)
    try:
        got: DeferredMessage | None = await again.defer_get("m1")
        assert got == claimed
        assert await again.defer_claim_due(T + 999, 10, 1_000) == []
    finally:
        await again.close()


async def test_a_busy_counter_is_counted_right_by_two_processes_on_one_file(
    tmp_path: Path,
) -> None:
    """A busy counter is counted from a copy in memory; a commit by another
    connection (another process on the same file) makes the copy be read again."""
    minute = 60_000
    busy = CapCheck("cap:sender:acme", "acme", 10_000, minute, True)
    first, second = SqliteStore(tmp_path / "state.db"), SqliteStore(tmp_path / "state.db")
    try:
        for i in range(MIRROR_FROM + 50):
            await send(first, ask(busy), T + i, f"a{i}")
        assert "cap:sender:acme" in first._mirrors  # the copy is in use
        for i in range(5):
            await send(second, ask(busy), T + 1000 + i, f"b{i}")
        expected = MIRROR_FROM + 55
        assert (await peek(first, ask(busy), T + 2000)).caps == (CapCount(expected),)
        await first.refund(ask(busy), "b0")
        assert (await peek(second, ask(busy), T + 2000)).caps == (CapCount(expected - 1),)
        # Expired by the other one's count: a minute later only its own send is left.
        await send(second, ask(busy), T + 2000 + minute, "b9")
        assert (await peek(first, ask(busy), T + 2000 + minute)).caps == (CapCount(1),)
    finally:
        await first.close()
        await second.close()
