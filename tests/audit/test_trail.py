"""One contract for every decision trail: memory and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit import AuditTrail, DecisionQuery, MemoryTrail, SqliteTrail
from gateway.audit.indexer import NICE
from gateway.audit.postgres import PostgresTrail
from gateway.audit.sqlite import INDEX_DELAY
from gateway.errors import AuditUnavailable
from tests.postgres_support import POSTGRES_URL, drop_table, new_table, require_postgres


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def trail(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditTrail]:
    made: AuditTrail = MemoryTrail()
    table = None
    if request.param == "sqlite":
        made = SqliteTrail(tmp_path / "a.db")
    elif request.param == "postgres":
        await require_postgres()
        table = new_table()
        made = await PostgresTrail.open(POSTGRES_URL, table, writer="test:a")
    yield made
    await made.close()
    if table is not None:
        await drop_table(table)


def record(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "decision_id": f"id{n:03d}",
        "decision": "allow",
        "sender": "acme",
        "recipient": "hmac:r1",
        "reasons": [],
        "trace": [],
        "upstream": None,
    } | fields


def opted_out(n: int, **fields: Any) -> dict[str, Any]:
    reason = {"rule": "global-opt-out", "code": "opted_out", "message": "m"}
    trace = [{"rule": "global-opt-out", "result": "fail", "code": "opted_out"}]
    return record(n, decision="reject", reasons=[reason], trace=trace, **fields)


async def ids(trail: AuditTrail, **filters: Any) -> list[str]:
    found, _ = await trail.query(DecisionQuery(**filters))
    return [r["decision_id"] for r in found]


async def test_append_get_and_amend(trail: AuditTrail) -> None:
    await trail.append(record(1), 1000)
    assert (await trail.get("id001")) == record(1)
    await trail.update("id001", {"upstream": {"status": 201}})
    got = await trail.get("id001")
    assert got is not None and got["upstream"] == {"status": 201}
    assert await trail.get("nope") is None


async def test_amendments_nobody_waits_for_are_read_back(trail: AuditTrail) -> None:
    await trail.append(record(1), 1000)
    trail.amend("id001", {"upstream": {"status": 202}})
    got = await trail.get("id001")  # in the same turn, before any commit ran
    assert got is not None and got["upstream"] == {"status": 202}
    reason = {"rule": "upstream", "code": "upstream_error", "message": "500"}
    trail.amend("id001", {"reasons": [reason]})
    assert await ids(trail, code="upstream_error") == ["id001"]


async def test_filters_newest_first(trail: AuditTrail) -> None:
    await trail.append(record(1), 1000)
    await trail.append(opted_out(2, recipient="hmac:r2"), 2000)
    await trail.append(record(3, sender="globex"), 3000)
    assert await ids(trail) == ["id003", "id002", "id001"]
    assert await ids(trail, sender="globex") == ["id003"]
    assert await ids(trail, recipient="hmac:r2") == ["id002"]
    assert await ids(trail, decision="reject") == ["id002"]
    assert await ids(trail, code="opted_out") == ["id002"]
    assert await ids(trail, rule="global-opt-out") == ["id002"]
    assert await ids(trail, since_ms=2000) == ["id003", "id002"]
    assert await ids(trail, until_ms=2000) == ["id001"]


async def test_amended_failures_are_found(trail: AuditTrail) -> None:
    await trail.append(record(1), 1000)
    reason = {"rule": "upstream", "code": "upstream_error", "message": "500"}
    await trail.update("id001", {"reasons": [reason]})
    assert await ids(trail, code="upstream_error") == ["id001"]


async def test_cursor_pages(trail: AuditTrail) -> None:
    for n in range(5):
        await trail.append(record(n), 1000 + n)
    first, cursor = await trail.query(DecisionQuery(limit=2))
    assert [r["decision_id"] for r in first] == ["id004", "id003"]
    second, cursor = await trail.query(DecisionQuery(limit=2, before=cursor))
    assert [r["decision_id"] for r in second] == ["id002", "id001"]
    last, cursor = await trail.query(DecisionQuery(limit=2, before=cursor))
    assert [r["decision_id"] for r in last] == ["id000"] and cursor is None


async def test_concurrent_writes_all_land(trail: AuditTrail) -> None:
    await asyncio.gather(*(trail.append(record(n), n) for n in range(100)))
    await asyncio.gather(*(trail.update(f"id{n:03d}", {"upstream": {"n": n}}) for n in range(100)))
    found, _ = await trail.query(DecisionQuery(limit=1000))
    assert len(found) == 100
    assert all(r["upstream"] == {"n": int(r["decision_id"][2:])} for r in found)


async def test_sqlite_queued_amendments_are_written_by_close(tmp_path: Path) -> None:
    first = SqliteTrail(tmp_path / "a.db")
    await first.append(record(1), 1000)
    first.amend("id001", {"upstream": {"status": 201}})
    await first.close()
    second = SqliteTrail(tmp_path / "a.db")
    got = await second.get("id001")
    await second.close()
    assert got is not None and got["upstream"] == {"status": 201}


async def test_sqlite_an_answer_is_kept_while_the_index_cannot_be_written(
    tmp_path: Path,
) -> None:
    """A message already sent keeps its upstream answer when the index is
    locked by another program: new decisions are refused meanwhile, and the
    answer reaches the index once the lock goes."""
    trail = SqliteTrail(tmp_path / "a.db")
    await trail.append(record(1), 1000)  # its message goes upstream
    with contextlib.closing(sqlite3.connect(tmp_path / "a.db", timeout=0)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        deadline = asyncio.get_running_loop().time() + 30
        n = 2
        while True:  # until the trail knows that its index is stuck
            try:
                await trail.append(record(n), 1000)
            except AuditUnavailable:
                break
            n += 1
            assert asyncio.get_running_loop().time() < deadline, "never refused"
            await asyncio.sleep(0.05)
        trail.amend("id001", {"upstream": {"status": 201}})
        await asyncio.sleep(0)  # the end of the turn, when amendments are written
        holder.rollback()
    got = None
    while got is None or got["upstream"] is None:
        assert asyncio.get_running_loop().time() < deadline + 30, "the answer was lost"
        await asyncio.sleep(0.05)
        with contextlib.suppress(AuditUnavailable):
            got = await trail.get("id001")
    assert got["upstream"] == {"status": 201}
    await trail.close()


async def test_sqlite_index_is_built_soon_without_a_reader(tmp_path: Path) -> None:
    """Nobody has to read for the index to be built: within INDEX_DELAY or so
    another connection sees the record and its amendment."""
    trail = SqliteTrail(tmp_path / "a.db")
    await trail.append(opted_out(1), 1000)
    trail.amend("id001", {"upstream": {"status": 201}})

    def count(table: str) -> int:
        with contextlib.closing(sqlite3.connect(tmp_path / "a.db")) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    deadline = asyncio.get_running_loop().time() + 5
    while count("amendments") < 1:
        assert asyncio.get_running_loop().time() < deadline, "the index was never built"
        await asyncio.sleep(INDEX_DELAY)
    assert (count("decisions"), count("decision_failures")) == (1, 1)
    await trail.close()


async def test_sqlite_records_survive_a_reopen(tmp_path: Path) -> None:
    first = SqliteTrail(tmp_path / "a.db")
    await first.append(opted_out(1), 1000)
    await first.update("id001", {"upstream": {"status": 500}})
    await first.close()
    again = SqliteTrail(tmp_path / "a.db")
    got = await again.get("id001")
    assert got is not None and got["upstream"] == {"status": 500}
    assert await ids(again, code="opted_out") == ["id001"]
    await again.close()


async def test_sqlite_unavailable_is_translated(tmp_path: Path) -> None:
    trail = SqliteTrail(tmp_path / "a.db")
    await trail.close()
    with pytest.raises(AuditUnavailable):
        await trail.append(record(1), 1000)
    with pytest.raises(AuditUnavailable):
        await trail.ping()
    with pytest.raises(AuditUnavailable):
        SqliteTrail(tmp_path / "missing" / "a.db")


async def test_sqlite_checkpoints_the_log_off_the_request_path(tmp_path: Path) -> None:
    """Commits only append to the log; a thread of the trail's own copies it
    into the database file within a second or so, with no request waiting."""
    trail = SqliteTrail(tmp_path / "a.db")
    await asyncio.gather(*(trail.append(record(n), n) for n in range(200)))
    deadline = asyncio.get_running_loop().time() + 10
    while _rows_in_database_file(tmp_path / "a.db") < 200:
        assert asyncio.get_running_loop().time() < deadline, "the log was never checkpointed"
        await asyncio.sleep(0.1)
    await trail.close()


def _rows_in_database_file(path: Path) -> int:
    """Rows in the main file alone (immutable: the log is not read)."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM decisions").fetchone()
    except sqlite3.OperationalError:  # not even the schema has reached the file yet
        count = 0
    finally:
        db.close()
    return int(count)


async def test_amendments_keep_their_order(trail: AuditTrail) -> None:
    await trail.append(record(1), 1000)
    trail.amend("id001", {"upstream": {"status": 500}})
    await trail.update("id001", {"upstream": {"status": 201}})  # the later one wins
    got = await trail.get("id001")
    assert got is not None and got["upstream"] == {"status": 201}


def test_the_indexer_runs_behind_requests_in_the_batch_class(tmp_path: Path) -> None:
    """Below the gateway, not in the idle class: that one got next to nothing
    while two workers kept both cores busy, and the index fell behind until
    new decisions failed closed."""

    async def scheduling() -> tuple[int, int, int]:
        trail = SqliteTrail(tmp_path / "a.db")
        try:
            await trail.append(record(1), 1000)
            assert await trail.get("id001") is not None  # indexed: the indexer is at work
            fields = Path(f"/proc/{trail._indexer.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[16]), int(fields[38]), os.getpriority(os.PRIO_PROCESS, 0)
        finally:
            await trail.close()

    nice, policy, ours = asyncio.run(scheduling())
    assert policy == os.SCHED_BATCH
    assert nice == min(19, ours + NICE)


def chain_of(*entries: bytes) -> list[str]:
    """The links of entries, computed here from the definition: SHA-256 of
    the previous link (32 zero bytes at first) and the entry."""
    links, previous = [], bytes(32)
    for entry in entries:
        previous = hashlib.sha256(previous + entry).digest()
        links.append(previous.hex())
    return links


async def test_verify_gives_the_same_head_on_every_backend(trail: AuditTrail) -> None:
    await trail.append(record(1), 1000)
    await trail.update("id001", {"upstream": {"status": 201}})
    trail.amend("id001", {"upstream": {"status": 202}})
    await trail.append(opted_out(2), 2000)
    links = chain_of(
        b'["d",1000,' + orjson.dumps(record(1)) + b"]",
        b'["a","id001",{"upstream":{"status":201}}]',
        b'["a","id001",{"upstream":{"status":202}}]',
        b'["d",2000,' + orjson.dumps(opted_out(2)) + b"]",
    )
    report = await trail.verify()
    assert report["intact"] is True
    (one,) = report["trails"]
    assert (one["entries"], one["decisions"], one["amendments"]) == (4, 2, 2)
    assert one["head"] == links[-1] and one["problem"] is None
    kept = await trail.verify(head=links[1])  # a head kept earlier is found later on
    assert kept["intact"] is True and kept["head_found"] is True
    unknown = await trail.verify(head="ab" * 32)
    assert unknown["intact"] is False and unknown["head_found"] is False
