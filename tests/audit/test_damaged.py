"""A damaged index: the records it points to are read as the journal holds
them, a row that leads to no readable record is shown as damaged rather than
failing the whole read, and `verify` names it. Real trails, real SQLite, and
the real `gateway audit` commands."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

from gateway.audit import DecisionQuery, SqliteTrail, reader, verify
from gateway.audit.base import DAMAGED
from tests.audit.test_trail import opted_out, record
from tests.audit.test_verify import ALLOWED, old_index, written
from tests.cli.test_cli import run


def damage(path: Path, change: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(change)


def listed(data: Path) -> dict[str, dict[str, object]]:
    """Every decision of the trail in `data`, by id, as `gateway audit` reads it."""
    return {str(r["decision_id"]): r for r in reader.records(data, DecisionQuery())}


async def test_a_row_that_points_into_the_journal_reads_the_journals_record(
    tmp_path: Path,
) -> None:
    path = await written(tmp_path)
    damage(path, f"UPDATE decisions SET doc = '{ALLOWED}' WHERE id = 'id005'")
    damage(path, "UPDATE decisions SET doc = '{}' WHERE id = 'id007'")
    found = listed(tmp_path)
    assert found["id005"] == opted_out(5) and found["id007"] == opted_out(7)
    assert not verify.trail(path).intact


async def test_a_row_of_no_readable_record_is_shown_as_damaged(tmp_path: Path) -> None:
    path = await written(tmp_path)
    damage(path, "UPDATE decisions SET offset = offset + 1 WHERE id = 'id006'")
    found = listed(tmp_path)
    assert len(found) == 12 and found["id005"] == opted_out(5)
    assert found["id006"] == {"decision_id": "id006", "damaged": DAMAGED}
    trail = SqliteTrail(path)
    try:
        assert await trail.get("id006") == found["id006"]
    finally:
        await trail.close()
    report = verify.trail(path)
    assert report.problem is not None and report.problem.decision_id == "id006"


async def test_an_amendment_of_no_readable_record_marks_its_decision(tmp_path: Path) -> None:
    path = await written(tmp_path, opens=1)
    damage(path, "UPDATE amendments SET length = 3 WHERE id = 'id004'")
    found = listed(tmp_path)
    assert found["id004"] == record(4) | {"damaged": DAMAGED}


def test_the_audit_commands_go_on_past_a_damaged_row(tmp_path: Path) -> None:
    """A row from before the documents stayed in the journal, its document
    emptied: the commands list it as damaged, and verify names it."""
    old_index(tmp_path / "audit.db")
    damage(tmp_path / "audit.db", "UPDATE decisions SET doc = '{}' WHERE id = 'id001'")
    data = ("--data-dir", str(tmp_path))
    done = run("audit", "query", *data)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"decision_id": "id001", "upstream": {}, "damaged": DAMAGED}
    assert "id001" in done.stderr  # and a word on it where an operator looks
    done = run("audit", "export", "--format", "csv", *data)
    assert done.returncode == 0, done.stderr
    assert [row["decision_id"] for row in csv.DictReader(io.StringIO(done.stdout))] == ["id001"]
    done = run("audit", "verify", *data)
    assert done.returncode == 1, done.stderr
    assert "ALTERED at decision id001: the index row of this decision says otherwise" in done.stdout
