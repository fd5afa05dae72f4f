"""The journal and the indexer: what a crash, a killed indexer or a second
indexer leave in the trail. Real files, real processes, real SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import SqliteTrail, chain, index, journal, sqlite
from gateway.audit.base import DecisionQuery
from gateway.audit.journal import Journal
from gateway.errors import AuditUnavailable
from tests.audit.test_trail import opted_out, record


def entry(n: int) -> bytes:
    """A decision entry as the trail hands it to the journal."""
    return b'["d",%d,{"decision_id":"id%03d","sender":"s","decision":"allow",' % (n, n) + (
        b'"recipient":"r","reasons":[],"trace":[]}]'
    )


def line(n: int) -> bytes:
    """An entry as a line of a journal file written before the chain."""
    return entry(n) + b"\n"


def rows(path: Path, table: str = "decisions") -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_journal_numbers_only_grow_and_files_rotate(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    first = Journal(folder, rotate_bytes=2 * len(chain.sealed([entry(1)], chain.GENESIS)[0]))
    for n in range(5):
        first.write([entry(n)])
    first.close()
    assert journal.file_numbers(folder) == [1, 2, 3]
    again = Journal(folder, numbers_from=2)
    assert again.number == 4  # past every file there is
    again.close()
    assert Journal(folder, numbers_from=9).number == 9


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "00000001.jsonl"
    path.write_bytes(line(1) + line(2) + line(3)[:20])
    run = journal.next_lines(path, 0, None)
    assert run == (line(1) + line(2), 2 * len(line(1)))
    assert journal.next_lines(path, run[1], None) is None


def test_a_builder_indexes_each_line_once_even_two_at_a_time(tmp_path: Path) -> None:
    """An indexer still finishing while the next process's starts: both
    take the position inside their transaction, so nothing is indexed twice."""
    folder = tmp_path / "a.journal"
    written = Journal(folder)
    for n in range(300):
        written.write([entry(n)])
    target = (written.number + 1, 0)
    builders = [index.Builder(index.connect(tmp_path / "a.db"), folder) for _ in range(2)]
    threads = [threading.Thread(target=b.build_to, args=(target,)) for b in builders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rows(tmp_path / "a.db") == 300


_CRASH = """
import asyncio, os, sys
from pathlib import Path
from gateway.audit import SqliteTrail

async def main():
    trail = SqliteTrail(Path(sys.argv[1]))
    for n in range(200):
        await trail.append({"decision_id": f"id{n:03d}", "decision": "allow", "sender": "s",
                            "recipient": "r", "reasons": [], "trace": []}, n)
    trail.amend("id199", {"upstream": {"status": 201}})
    await asyncio.sleep(0)  # the end of the turn: the amendment is written
    print("written", flush=True)
    os.kill(os.getpid(), 9)  # no close, no index pass: killed

asyncio.run(main())
"""


async def test_a_killed_process_loses_nothing_it_wrote(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRASH), str(tmp_path / "a.db")],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL and done.stdout == b"written\n"
    trail = SqliteTrail(tmp_path / "a.db")
    found, _ = await trail.query(DecisionQuery(limit=500))
    assert len(found) == 200
    got = await trail.get("id199")
    assert got is not None and got["upstream"] == {"status": 201}
    await trail.append(record(200), 200)  # the chain goes on from what the killed one wrote
    answer = await trail.verify()
    assert answer["intact"] is True and answer["trails"][0]["entries"] == 202
    await trail.close()


def tuned_trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **limits: float) -> SqliteTrail:
    """A trail with some of its module's limits changed (RETRY_DELAY, MAX_BEHIND)."""
    for name, value in limits.items():
        monkeypatch.setattr(sqlite, name, value)
    return SqliteTrail(tmp_path / "a.db")


async def test_a_killed_indexer_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = tuned_trail(tmp_path, monkeypatch, RETRY_DELAY=0.1)
    await trail.append(opted_out(1), 1000)
    await trail.ping()
    os.kill(_indexer_pid(trail), signal.SIGKILL)
    await _until_refused(trail)  # the index cannot be written meanwhile: fail closed
    await _until_accepted(trail, record(2))
    assert [r["decision_id"] for r in (await trail.query(DecisionQuery()))[0]] == ["id002", "id001"]
    await trail.close()


async def test_writes_fail_closed_when_the_index_falls_too_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = tuned_trail(tmp_path, monkeypatch, MAX_BEHIND=10_000)
    await trail.ping()
    pid = _indexer_pid(trail)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(AuditUnavailable, match="behind"):
            for n in range(1000):
                await trail.append(record(n), n)
    finally:
        os.kill(pid, signal.SIGCONT)
    await _until_accepted(trail, record(1001))
    await trail.close()


def _indexer_pid(trail: SqliteTrail) -> int:
    return int(trail._indexer.pid)


async def _until_refused(trail: SqliteTrail) -> None:
    for _ in range(200):
        try:
            await trail.ping()
        except AuditUnavailable:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the trail never noticed its indexer was gone")


async def _until_accepted(trail: SqliteTrail, entry: dict[str, Any]) -> None:
    for _ in range(200):
        try:
            await trail.append(entry, 1)
        except AuditUnavailable:
            await asyncio.sleep(0.05)
            continue
        return
    raise AssertionError("the trail never took decisions again")


async def test_synchronous_full_and_a_reopened_trail(
    tmp_path: Path,
) -> None:
    trail = SqliteTrail(tmp_path / "a.db", synchronous_full=True)
    await asyncio.gather(*(trail.append(record(n), n) for n in range(50)))
    await trail.update("id007", {"upstream": {"status": 201}})
    got = await trail.get("id007")
    assert got is not None and got["upstream"] == {"status": 201}
    await trail.close()
    assert rows(tmp_path / "a.db") == 50
    again = SqliteTrail(tmp_path / "a.db")  # the documents stay in the journal's files
    got = await again.get("id007")
    assert got is not None and got["upstream"] == {"status": 201}
    await again.close()


async def test_a_journal_line_that_is_not_an_entry_fails_closed_and_names_the_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "a.journal"
    written = Journal(folder)
    written.write([entry(1), b'["d",2,{"no":"id"}]'])
    written.close()
    trail = SqliteTrail(tmp_path / "a.db")
    with pytest.raises(AuditUnavailable) as refused:
        await trail.ping()
    assert f"{folder / '00000001.jsonl'} holds a line" in str(refused.value)
    with pytest.raises(AuditUnavailable):
        await trail.append(record(3), 3)  # nothing is decided on a trail that cannot be read
    await trail.close()
    assert rows(tmp_path / "a.db") == 0  # the run with the bad line went in whole or not at all


# The index's tables before documents stayed in the journal: each row held its own.
OLD_INDEX = (
    "CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE, at_ms INTEGER NOT NULL, sender TEXT NOT NULL,"
    " decision TEXT NOT NULL, recipient TEXT NOT NULL, doc TEXT NOT NULL);"
    "CREATE TABLE amendments (n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL, doc TEXT NOT NULL);"
)


async def test_an_index_made_before_documents_stayed_in_the_journal_is_read(
    tmp_path: Path,
) -> None:
    """Rows that carry their document (the earlier layout) read as before,
    beside new rows whose document is in the journal."""
    with sqlite3.connect(tmp_path / "a.db") as db:
        db.executescript(OLD_INDEX)
        old = json.dumps(record(1))
        db.execute(
            "INSERT INTO decisions VALUES (NULL, 'id001', 1, 'acme', 'allow', 'hmac:r1', ?)", (old,)
        )
        db.execute(
            "INSERT INTO amendments VALUES (NULL, 'id001', '{\"upstream\": {\"status\": 201}}')"
        )
    trail = SqliteTrail(tmp_path / "a.db")
    await trail.append(record(2), 2)
    found, _ = await trail.query(DecisionQuery())
    assert [r["decision_id"] for r in found] == ["id002", "id001"]
    assert found[1]["upstream"] == {"status": 201}
    await trail.close()


async def test_a_missing_journal_file_is_one_clear_error(tmp_path: Path) -> None:
    trail = SqliteTrail(tmp_path / "a.db")
    await trail.append(record(1), 1)
    await trail.close()
    for path in (tmp_path / "a.journal").iterdir():
        path.unlink()
    again = SqliteTrail(tmp_path / "a.db")
    with pytest.raises(AuditUnavailable, match=r"journal file .* is missing"):
        await again.get("id001")
    await again.close()


def test_a_file_is_closed_after_a_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = Journal(tmp_path / "j")
    written.write([entry(1)])
    monkeypatch.setattr(journal, "ROTATE_SECONDS", -1.0)  # as if a day had passed
    written.write([entry(2)])
    written.write([entry(3)])
    written.close()
    assert journal.file_numbers(tmp_path / "j") == [1, 2, 3]
