"""Retention: the oldest journal files and their rows go, the chain that is
left still verifies, and what a running trail reads stays whole."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.audit import DecisionQuery, SqliteTrail, journal, retention, verify
from gateway.errors import AuditUnavailable
from tests.audit.test_trail import opted_out, record
from tests.audit.test_verify import files, written
from tests.cli.test_cli import run

DAY_MS = 86_400_000


def age(path: Path, days: int) -> None:
    """Make a journal file's last write `days` old (its decisions are older still:
    `written` decides them at 1970 + n seconds)."""
    when = os.stat(path).st_mtime - days * 86400
    os.utime(path, (when, when))


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_prunable_takes_the_leading_old_files_only() -> None:
    files = [(1, 100), (2, 200), (3, 900), (4, 150), (5, 100)]
    assert retention.prunable(files, below=9, cutoff_ms=500) == [1, 2]
    assert retention.prunable(files, below=2, cutoff_ms=500) == [1]
    assert retention.prunable(files, below=9, cutoff_ms=50) == []


async def test_old_files_go_and_the_rest_still_verifies(tmp_path: Path) -> None:
    path = await written(tmp_path, opens=4)  # files 1-4, 4 decisions and 1 amendment each
    kept_head = verify.trail(path).head
    first, second, third, fourth = files(path)
    for old in (first, second):
        age(old, 30)
    cutoff = int((os.stat(third).st_mtime - 86400) * 1000)  # a day before the third's last write
    done = retention.prune(path, cutoff)
    assert (done.files, done.decisions, done.amendments) == (2, 8, 2)
    assert files(path) == [third, fourth]
    assert (rows(path, "decisions"), rows(path, "amendments")) == (8, 2)
    report = verify.trail(path, {kept_head} if kept_head else ())
    assert report.intact, report.problem
    assert (report.entries, report.pruned, report.files) == (10, 8, 2)
    assert report.head == kept_head and kept_head in report.heads_found
    again = retention.prune(path, cutoff)  # nothing more is old enough
    assert again == retention.Pruned(0, 0, 0)


async def test_a_trail_goes_on_after_retention(tmp_path: Path) -> None:
    path = await written(tmp_path, opens=2)
    age(files(path)[0], 30)
    retention.prune(path, int(os.stat(files(path)[1]).st_mtime * 1000) - DAY_MS)
    trail = SqliteTrail(path)
    await trail.append(record(77), 77_000)
    found, _ = await trail.query(DecisionQuery(limit=100))
    assert [r["decision_id"] for r in found][:1] == ["id077"] and len(found) == 5
    assert await trail.get("id001") is None  # removed with its file
    answer = await trail.verify()
    await trail.close()
    assert answer["intact"] is True, answer
    assert answer["trails"][0]["pruned"] == 4


async def test_the_newest_file_with_entries_always_stays(tmp_path: Path) -> None:
    path = await written(tmp_path, opens=1)
    (only,) = files(path)
    journal.Journal(path.with_suffix(".journal")).close()  # an empty newest file
    age(only, 30)
    assert retention.prune(path, 10**15) == retention.Pruned(0, 0, 0)
    assert only.exists()


async def test_an_interrupted_run_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await written(tmp_path, opens=3)
    first = files(path)[0]
    age(first, 30)
    cutoff = int(os.stat(files(path)[1]).st_mtime * 1000) - DAY_MS

    def crash(*args: object) -> None:
        raise OSError("power cut")

    with monkeypatch.context() as patched:
        patched.setattr(retention, "_delete_rows", crash)
        with pytest.raises(AuditUnavailable, match="power cut"):
            retention.prune(path, cutoff)
    assert first.exists() and rows(path, "decisions") == 12  # the cut is recorded, nothing gone
    assert verify.trail(path).intact  # and it already verifies from the cut
    retention.prune(path, cutoff)
    assert not first.exists() and rows(path, "decisions") == 8
    report = verify.trail(path)
    assert report.intact and report.pruned == 4


async def test_failed_rules_of_removed_decisions_go_too(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    trail = SqliteTrail(path)
    for n in range(1, 4):
        await trail.append(opted_out(n), n)
    await trail.close()
    trail = SqliteTrail(path)
    await trail.append(opted_out(9), 9)
    await trail.close()
    old, new = files(path)
    age(old, 30)
    retention.prune(path, int(os.stat(new).st_mtime * 1000) - DAY_MS)
    assert not old.exists() and new.exists()
    assert rows(path, "decision_failures") == 1
    trail = SqliteTrail(path)
    assert [r["decision_id"] for r in (await trail.query(DecisionQuery(code="opted_out")))[0]] == [
        "id009"
    ]
    await trail.close()


async def test_a_running_trail_removes_what_is_past_its_retention(tmp_path: Path) -> None:
    path = await written(tmp_path, opens=2)
    old, new = files(path)
    age(old, 30)
    trail = SqliteTrail(path, retention_seconds=86400)
    try:
        for _ in range(200):  # the indexer looks at once when it starts
            if not old.exists():
                break
            await asyncio.sleep(0.05)
        assert not old.exists() and new.exists()
        assert len((await trail.query(DecisionQuery(limit=100)))[0]) == 4
        assert (await trail.verify())["intact"] is True
    finally:
        await trail.close()


def test_gateway_audit_prune(tmp_path: Path) -> None:
    path = asyncio.run(written(tmp_path, opens=2))
    old = files(path)[0]
    age(old, 30)
    done = run("audit", "prune", "--data-dir", str(tmp_path), "--older-than", "20d")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "audit.db: removed 4 decisions and 1 amendment (1 journal file) older than 20d\n"
    )
    assert not old.exists()
    again = run("audit", "prune", "--data-dir", str(tmp_path))
    assert again.returncode == 2
    assert again.stderr == "gateway: --older-than: how old? (e.g. 400d; or set audit.retention)\n"
    bad = run("audit", "prune", "--data-dir", str(tmp_path), "--older-than", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("gateway: --older-than: 'soon'")
    hasty = run("audit", "prune", "--data-dir", str(tmp_path), "--older-than", "12h")
    assert (hasty.returncode, hasty.stderr) == (
        2,
        "gateway: --older-than: '12h' is shorter than a day\n",
    )
    checked = run("audit", "verify", "--data-dir", str(tmp_path))
    assert checked.returncode == 0, checked.stdout
    assert ", after 4 decisions removed by retention; head " in checked.stdout
