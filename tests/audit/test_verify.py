"""Verifying a trail: every way of altering the files on disk that the hash
chain and the index check are meant to catch, named where it happened.
Real journal files and a real SQLite index, written by the trail itself."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.audit import DecisionQuery, SqliteTrail, chain, index, journal, verify
from gateway.errors import AuditUnavailable
from tests.audit.test_journal import OLD_INDEX
from tests.audit.test_trail import opted_out, record


async def written(tmp_path: Path, opens: int = 3, each: int = 4) -> Path:
    """A trail opened `opens` times (one journal file each), `each` decisions
    and one amendment written each time; the path of its index."""
    path = tmp_path / "audit.db"
    n = 0
    for _ in range(opens):
        trail = SqliteTrail(path)
        for _ in range(each):
            n += 1
            await trail.append(opted_out(n) if n % 2 else record(n), 1000 * n)
        trail.amend(f"id{n:03d}", {"upstream": {"status": 201}})
        await trail.close()
    return path


def files(path: Path) -> list[Path]:
    folder = path.with_suffix(".journal")
    return [journal.path_of(folder, n) for n in journal.file_numbers(folder)]


def lines_of(file: Path) -> list[bytes]:
    return file.read_bytes().splitlines(keepends=True)


def altered(path: Path, statement: str, *args: object) -> verify.Problem:
    """What verify finds once `statement` has changed the index."""
    with sqlite3.connect(path) as db:
        db.execute(statement, args)
    return problem(path)


# A decision made up in the index alone.
MADE_UP = (
    "INSERT INTO decisions (id, at_ms, sender, decision, recipient, doc)"
    " VALUES ('id900', 900, 'acme', 'allow', 'hmac:r1', ?)"
)


def problem(path: Path) -> verify.Problem:
    report = verify.trail(path)
    assert not report.intact, "the alteration went unnoticed"
    assert report.problem is not None
    return report.problem


async def test_an_untouched_trail_is_intact_across_restarts(tmp_path: Path) -> None:
    path = await written(tmp_path)
    report = verify.trail(path)
    assert report.intact, report.problem
    assert (report.files, report.entries, report.decisions, report.amendments) == (3, 15, 12, 3)
    assert report.unchained == report.torn == 0
    last = lines_of(files(path)[-1])[-1]
    assert report.head == chain.opened(last)[1].hex()  # type: ignore[union-attr]


async def test_a_changed_byte_is_found_at_its_line(tmp_path: Path) -> None:
    path = await written(tmp_path)
    second = files(path)[1]
    lines = lines_of(second)
    lines[2] = lines[2].replace(b'"decision":"reject"', b'"decision":"allow!"')
    second.write_bytes(b"".join(lines))
    found = problem(path)
    assert (found.file, found.line, found.decision_id) == (second.name, 3, "id007")
    assert found.offset == len(lines[0]) + len(lines[1])
    assert "does not match its link" in found.reason


async def test_a_removed_line_breaks_the_chain_at_the_next_one(tmp_path: Path) -> None:
    path = await written(tmp_path)
    first = files(path)[0]
    lines = lines_of(first)
    del lines[1]
    first.write_bytes(b"".join(lines))
    found = problem(path)
    assert (found.file, found.line, found.decision_id) == (first.name, 2, "id003")


async def test_a_removed_file_is_found(tmp_path: Path) -> None:
    path = await written(tmp_path)
    gone = files(path)[1]
    gone.unlink()
    found = problem(path)
    assert found.file == gone.name and "missing" in found.reason and found.line is None


async def test_a_removed_file_and_its_index_rows_still_break_the_chain(tmp_path: Path) -> None:
    path = await written(tmp_path)
    gone, after = files(path)[1:]
    gone.unlink()
    with sqlite3.connect(path) as db:
        for table in ("decisions", "amendments"):
            db.execute(f"DELETE FROM {table} WHERE file = ?", (int(gone.stem),))
    found = problem(path)
    assert (found.file, found.line) == (after.name, 1)


async def test_a_cut_off_end_is_found_against_the_index(tmp_path: Path) -> None:
    path = await written(tmp_path)
    last = files(path)[-1]
    lines = lines_of(last)
    last.write_bytes(b"".join(lines[:-2]))
    found = problem(path)
    assert (found.file, found.line) == (last.name, None)  # at no entry: no line to name
    assert found.offset == sum(len(line) for line in lines[:-2])
    assert "points here, where no entry starts" in found.reason


async def test_a_cut_off_end_and_its_rows_is_found_by_the_head_kept(tmp_path: Path) -> None:
    path = await written(tmp_path)
    kept = verify.trail(path).head
    assert kept is not None
    last = files(path)[-1]
    lines = lines_of(last)
    last.write_bytes(b"".join(lines[:-1]))
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM amendments WHERE file = ?", (int(last.stem),))
        db.execute("UPDATE journal_position SET file = ?, offset = 0", (int(last.stem) + 1,))
    report = verify.trail(path, {kept})
    assert report.intact  # the chain that is left is whole ...
    summary = verify.summary([report], kept)
    assert summary["intact"] is False and summary["head_found"] is False  # ... but shorter


async def test_a_row_hidden_from_the_index_is_found(tmp_path: Path) -> None:
    path = await written(tmp_path)
    found = altered(path, "DELETE FROM decisions WHERE id = 'id005'")
    assert found.decision_id == "id005" and "hidden from queries" in found.reason


# The record of id005 as the journal holds it, but allowing the message.
ALLOWED = json.dumps(opted_out(5) | {"decision": "allow", "reasons": []})


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE decisions SET decision = 'allow' WHERE id = 'id005'",
        "UPDATE decisions SET recipient = 'hmac:other' WHERE id = 'id005'",
        "DELETE FROM decision_failures WHERE seq = (SELECT seq FROM decisions WHERE id = 'id005')",
        f"UPDATE decisions SET doc = '{ALLOWED}' WHERE id = 'id005'",
        "UPDATE decisions SET doc = '{}' WHERE id = 'id005'",
        "INSERT INTO decision_failures SELECT seq, 'quiet-hours', 'outside_window'"
        " FROM decisions WHERE id = 'id005'",
    ],
)
async def test_a_changed_index_row_is_found(tmp_path: Path, change: str) -> None:
    path = await written(tmp_path)
    found = altered(path, change)
    assert found.decision_id == "id005" and "says otherwise" in found.reason


async def test_a_failed_rule_added_to_an_allowed_decision_is_found(tmp_path: Path) -> None:
    path = await written(tmp_path)
    found = altered(
        path,
        "INSERT INTO decision_failures SELECT seq, 'global-opt-out', 'opted_out'"
        " FROM decisions WHERE id = 'id006'",
    )
    assert (found.file, found.line, found.decision_id) == (files(path)[1].name, 2, "id006")
    assert "failed rules" in found.reason and "added" in found.reason


async def test_a_decision_row_the_journal_does_not_hold_is_found(tmp_path: Path) -> None:
    """A made-up decision in the index alone, on a trail chained from its first entry."""
    path = await written(tmp_path)
    found = altered(path, MADE_UP, json.dumps(record(900)))
    assert (found.decision_id, found.line) == ("id900", None)
    assert "journal does not hold" in found.reason and "inserted" in found.reason


async def test_a_row_slipped_in_before_the_journal_rows_is_found(tmp_path: Path) -> None:
    path = await written(tmp_path)
    first = (  # seq 0: before every row the indexer wrote
        "INSERT INTO decisions (seq, id, at_ms, sender, decision, recipient, doc)"
        " VALUES (0, 'id900', 900, 'acme', 'allow', 'hmac:r1', ?)"
    )
    found = altered(path, first, json.dumps(record(900)))
    assert found.decision_id == "id900" and "inserted" in found.reason


async def test_an_amendment_row_the_journal_does_not_hold_is_found(tmp_path: Path) -> None:
    """An upstream's answer made up for a refused decision, in the index alone."""
    path = await written(tmp_path)
    answer = json.dumps({"upstream": {"status": 201}})
    found = altered(path, "INSERT INTO amendments (id, doc) VALUES ('id001', ?)", answer)
    assert (found.decision_id, found.line) == ("id001", None)
    assert "amendment" in found.reason and "inserted" in found.reason


async def test_a_row_for_an_earlier_file_among_later_rows_is_found(tmp_path: Path) -> None:
    """Rows go in in journal order: one that names the first file after the
    rows of the last was not put there by the indexer."""
    path = await written(tmp_path)
    first = files(path)[0]
    length = len(lines_of(first)[0])
    found = altered(
        path,
        "INSERT INTO decisions (id, at_ms, sender, decision, recipient, doc, file, offset,"
        " length) VALUES ('id900', 900, 'acme', 'allow', 'hmac:r1', '', ?, 0, ?)",
        int(first.stem),
        length,
    )
    assert (found.file, found.decision_id) == (first.name, "id900")
    assert "inserted" in found.reason


async def test_rows_from_before_the_journal_are_counted_not_blamed(tmp_path: Path) -> None:
    """An index made before the documents stayed in the journal keeps its
    rows (they hold their documents): they predate the chain, and are
    counted as unchained; a row added among them afterwards is not."""
    path = tmp_path / "audit.db"
    old_index(path)
    trail = SqliteTrail(path)
    await trail.append(record(2), 2)
    trail.amend("id002", {"upstream": {"status": 201}})
    await trail.close()
    report = verify.trail(path)
    assert report.intact, report.problem
    assert (report.unchained, report.entries) == (2, 2)
    assert altered(path, MADE_UP, json.dumps(record(900))).decision_id == "id900"


async def test_a_row_from_before_the_journal_with_another_record_is_found(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.db"
    old_index(path)
    found = altered(path, "UPDATE decisions SET doc = '{}' WHERE id = 'id001'")
    assert found.decision_id == "id001" and "says otherwise" in found.reason


def old_index(path: Path) -> None:
    """An index in the layout from before documents stayed in the journal:
    a decision and its amendment, their documents in their rows."""
    with sqlite3.connect(path) as db:
        db.executescript(OLD_INDEX)
        db.execute(
            "INSERT INTO decisions VALUES (NULL, 'id001', 1, 'acme', 'allow', 'hmac:r1', ?)",
            (json.dumps(record(1)),),
        )
        db.execute("INSERT INTO amendments VALUES (NULL, 'id001', '{\"upstream\": {}}')")
    index.connect(path).close()  # as a gateway opening it: the columns of the journal added


async def test_failed_rules_an_amendment_added_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    trail = SqliteTrail(path)
    await trail.append(record(1), 1000)
    reason = {"rule": "upstream", "code": "upstream_error", "message": "500"}
    await trail.update("id001", {"reasons": [reason]})
    await trail.close()
    assert verify.trail(path).intact
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM decision_failures WHERE code = 'upstream_error'")
    found = problem(path)
    assert found.decision_id == "id001" and "failed rules" in found.reason


async def test_an_inserted_unlinked_line_is_found(tmp_path: Path) -> None:
    path = await written(tmp_path, opens=1)
    only = files(path)[0]
    lines = lines_of(only)
    lines.insert(2, chain.decision(record(99), 99) + b"\n")
    only.write_bytes(b"".join(lines))
    found = problem(path)
    assert (found.line, found.decision_id) == (3, "id099")
    assert "without a link" in found.reason


async def test_a_line_that_is_not_an_entry_is_found(tmp_path: Path) -> None:
    path = await written(tmp_path, opens=1)
    only = files(path)[0]
    only.write_bytes(only.read_bytes() + b"hello\n")
    found = problem(path)
    assert found.reason == "not a trail entry" and found.line == 6


async def test_a_torn_last_line_is_counted_not_blamed(tmp_path: Path) -> None:
    """A crash in the middle of a write leaves a line without its newline; its
    caller never heard back, so it is no alteration, and the next process
    goes on from the last whole entry."""
    path = await written(tmp_path, opens=1)
    only = files(path)[0]
    only.write_bytes(only.read_bytes() + b'["d",7,{"decision_id":"id0')
    trail = SqliteTrail(path)
    await trail.append(record(50), 50_000)
    await trail.close()
    report = verify.trail(path)
    assert report.intact, report.problem
    assert (report.torn, report.entries) == (1, 6)


async def test_entries_from_before_the_chain_are_counted(tmp_path: Path) -> None:
    """A journal written before entries carried links: its lines are counted
    as unchained, and the chain starts after them."""
    path = tmp_path / "audit.db"
    folder = path.with_suffix(".journal")
    folder.mkdir()
    old = b"".join(chain.decision(record(n), n) + b"\n" for n in (1, 2))
    journal.path_of(folder, 1).write_bytes(old)
    trail = SqliteTrail(path)
    await trail.append(record(3), 3)
    assert len((await trail.query(DecisionQuery()))[0]) == 3
    await trail.close()
    report = verify.trail(path)
    assert report.intact, report.problem
    assert (report.unchained, report.entries) == (2, 3)
    assert report.head == chain.link(chain.GENESIS, chain.decision(record(3), 3)).hex()


def test_an_unreadable_index_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "audit.db").write_bytes(b"not a database at all, not even close" * 100)
    with pytest.raises(AuditUnavailable, match="cannot read"):
        verify.trail(tmp_path / "audit.db")
