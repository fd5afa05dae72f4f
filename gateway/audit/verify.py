"""Verification of a trail: its journal's hash chain, and its index against it.

Walks the journal files in order (a snapshot: each file up to the size it
had when the walk began, so it can run beside a gateway that is writing)
and stops at the first problem, which it names by file, line and byte:

- an entry whose link does not match: it was changed, or entries before it
  were removed or inserted (a whole file removed shows here too, at the
  first entry of the next one);
- a line that is not a trail entry, or one without a link after linked ones;
- an index row the journal does not bear out: a journal entry the index
  has no row for (hidden from queries), a row that says otherwise than the
  entry (id, time, sender, decision, recipient, failed rules), a row
  pointing where no entry starts, or into a file that is gone;
- a journal shorter than the index says it has read (its end was cut off).

Cutting off the newest entries leaves a chain that is whole: only a head
(a link) kept elsewhere shows that, which is why the report gives the head
and checks the ones it is given.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.audit import chain, index, journal, reader
from gateway.audit.base import failures
from gateway.errors import AuditUnavailable

# What an index row says of its entry: kind, id, length, and for decisions
# at_ms, sender, decision, recipient.
_RowFacts = tuple[Any, ...]


@dataclass(slots=True)
class Problem:
    file: str
    line: int | None  # None: the problem is not at an entry (a missing file, a cut end)
    offset: int
    reason: str
    decision_id: str | None = None


@dataclass(slots=True)
class Report:
    """What the walk of one trail found. `head` is the last link (hex)."""

    trail: str
    files: int = 0
    entries: int = 0
    decisions: int = 0
    amendments: int = 0
    unchained: int = 0
    torn: int = 0
    pruned: int = 0  # decisions removed by retention before the chain's first file
    head: str | None = None
    heads_found: set[str] = field(default_factory=set)
    problem: Problem | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def as_json(self) -> dict[str, Any]:
        """The trail's part of the answer: its counts, head and problem (or null)."""
        out = {"trail": self.trail, "intact": self.intact} | asdict(self)
        del out["heads_found"]  # the heads asked about are answered once, in `summary`
        return out


def summary(reports: list[Report], head: str | None) -> dict[str, Any]:
    """The answer of `GET /v1/audit/verify` and `gateway audit verify --json`:
    intact only if every trail is, and the head asked about is in one."""
    out: dict[str, Any] = {
        "intact": all(r.intact for r in reports),
        "trails": [r.as_json() for r in reports],
    }
    if head is not None:
        found = any(head in r.heads_found for r in reports)
        out["head_found"] = found
        out["intact"] = out["intact"] and found
    return out


def with_more(answer: dict[str, Any], more: list[Report], head: str | None) -> dict[str, Any]:
    """`summary`'s answer for some trails, with more trails' reports added."""
    trails = [*answer["trails"], *(r.as_json() for r in more)]
    out: dict[str, Any] = {"intact": all(t["intact"] for t in trails), "trails": trails}
    if head is not None:
        found = bool(answer.get("head_found")) or any(head in r.heads_found for r in more)
        out["head_found"] = found
        out["intact"] = out["intact"] and found
    return out


class _Broken(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def trail(
    index_path: Path,
    heads: Collection[str] = (),
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify the trail whose index is at `index_path`; `heads` are links to
    look for; `progress(n)` hears the journal bytes read so far."""
    report = Report(trail=str(index_path))
    db = reader.open_index(index_path)
    try:
        _Walk(db, index.folder_of(index_path), report, set(heads), progress).run()
    except _Broken as broken:
        report.problem = broken.problem
    except (sqlite3.Error, OSError) as exc:
        raise AuditUnavailable(f"audit trail: cannot verify {index_path} ({exc})") from None
    finally:
        db.close()
    return report


def journal_bytes(index_path: Path) -> int:
    """How much journal a verification of this trail reads (for progress)."""
    folder = index.folder_of(index_path)
    total = 0
    for number in journal.file_numbers(folder):
        total += _size(journal.path_of(folder, number))
    return total


class _Walk:
    def __init__(
        self,
        db: sqlite3.Connection,
        folder: Path,
        report: Report,
        heads: set[str],
        progress: Callable[[int], None] | None,
    ) -> None:
        self.db, self.folder, self.report = db, folder, report
        self.heads = heads
        self.progress = progress
        self.previous = chain.GENESIS
        self.linked = False  # a linked entry was seen: every later one must be too
        self.read = 0
        self.late: dict[str, set[tuple[str, str]]] = {}  # failures amendments added, by id
        # The position is read before the sizes: what it covers is in the snapshot.
        self.position = index.position(db)
        # Retention removed the files up to `upto`: the chain goes on from its link.
        cut = index.pruned(db)
        self.upto = 0
        if cut is not None:
            self.upto, self.previous, report.pruned = cut
            self.linked = self.previous != chain.GENESIS
        self.numbers = [n for n in journal.file_numbers(folder) if n > self.upto]
        self.sizes = {n: _size(journal.path_of(folder, n)) for n in self.numbers}
        # The index's rows, in journal order: file by file as the walk goes.
        self.decisions = _InOrder(
            db,
            "SELECT file, offset, id, length, at_ms, sender, decision, recipient, seq"
            " FROM decisions WHERE file > ? ORDER BY seq",
            self.upto,
        )
        self.amendments = _InOrder(
            db,
            "SELECT file, offset, id, length FROM amendments WHERE file > ? ORDER BY n",
            self.upto,
        )
        self.failures = _InOrder(
            db,
            "SELECT f.seq, f.seq, f.rule, f.code FROM decision_failures f"
            " JOIN decisions d USING (seq) WHERE d.file > ? ORDER BY f.seq",
            self.upto,
        )

    def run(self) -> None:
        self._files_the_index_needs()
        for number in self.numbers:
            self._file(number)
        self._late_failures()
        self.report.unchained += self._rows_without_journal()

    def _files_the_index_needs(self) -> None:
        """Every file the index points into is there, and as long as it read."""
        at_file, at_offset = self.position
        wanted = {
            row[0]
            for table in ("decisions", "amendments")
            for row in self.db.execute(
                f"SELECT DISTINCT file FROM {table}"
                " WHERE file > ? AND (file < ? OR (file = ? AND offset < ?))",
                (self.upto, at_file, at_file, at_offset),
            )
        }
        if at_offset > 0:
            wanted.add(at_file)
        for number in sorted(wanted - set(self.numbers)):
            name = journal.path_of(self.folder, number).name
            reason = "the journal file is missing; the index holds entries from it"
            raise _Broken(Problem(name, None, 0, reason))
        if at_offset > self.sizes.get(at_file, at_offset):
            name = journal.path_of(self.folder, at_file).name
            reason = (
                f"the file ends at byte {self.sizes[at_file]}, before byte {at_offset} that"
                " the index has read up to: entries were cut off its end"
            )
            raise _Broken(Problem(name, None, self.sizes[at_file], reason))

    def _file(self, number: int) -> None:
        path = journal.path_of(self.folder, number)
        size = self.sizes[number]
        rows = self._rows(number)
        offset, line_no = 0, 0
        self.report.files += 1
        while (run := journal.next_lines(path, offset, size)) is not None:
            lines = run[0]
            for line in lines.splitlines(keepends=True):
                line_no += 1
                self._entry(path.name, line_no, offset, line, rows, (number, offset))
                offset += len(line)
            self.read += len(lines)
            if self.progress is not None:
                self.progress(self.read)
        if offset < size:
            self.report.torn += 1  # a crash in the middle of a write; its caller never heard back
            self.read += size - offset
        for left in sorted(rows):
            reason = "the index points here, where no entry starts"
            raise _Broken(Problem(path.name, None, left, reason, str(rows[left][1])))

    def _entry(
        self,
        name: str,
        line_no: int,
        offset: int,
        line: bytes,
        rows: dict[int, _RowFacts],
        where: journal.Position,
    ) -> None:
        def broken(reason: str, decision_id: str | None = None) -> _Broken:
            return _Broken(Problem(name, line_no, offset, reason, decision_id))

        entry, found = chain.opened(line)
        facts = _facts(entry)
        if facts is None:
            raise broken("not a trail entry")
        decision_id = str(facts[1])
        if found is None:
            if self.linked:
                reason = "an entry without a link after linked ones: it was inserted"
                raise broken(reason, decision_id)
            self.report.unchained += 1
        else:
            expected = chain.link(self.previous, entry)
            if expected != found:
                raise broken(
                    "the entry does not match its link: it was changed, or entries before it"
                    " were removed or inserted",
                    decision_id,
                )
            self.previous, self.linked = found, True
            self.report.head = found.hex()
            if self.heads and self.report.head in self.heads:
                self.report.heads_found.add(self.report.head)
        self.report.entries += 1
        if facts[0] == "d":
            self.report.decisions += 1
        else:
            self.report.amendments += 1
        if where >= self.position:
            return  # not indexed yet
        own = facts[-1]
        if facts[0] == "a":
            if own:  # filed under the decision's row; checked once the walk is over
                self.late.setdefault(decision_id, set()).update(own)
            own = set()
        row = rows.pop(offset, None)
        if row is None:
            reason = "the index has no row for this entry: it is hidden from queries"
            raise broken(reason, decision_id)
        # A decision's row holds its own failed rules, and its amendments'.
        if row[:-1] != (*facts[:2], len(line), *facts[2:-1]) or not own <= row[-1]:
            raise broken("the index row of this entry says otherwise: it was changed", decision_id)

    def _rows(self, number: int) -> dict[int, _RowFacts]:
        """The index rows that point into file `number`, by offset: taken from
        the index in its own order (rows go in in journal order), so the
        walk reads each table once, whatever the number of files."""
        rows: dict[int, _RowFacts] = {}
        seqs: dict[int, int] = {}  # decision seq -> offset
        for row in self.decisions.take(number):
            offset, decision_id, length, *columns, seq = row
            rows[offset] = ("d", decision_id, length, *columns, set())
            seqs[seq] = offset
        if seqs:
            for seq, rule, code in self.failures.take(max(seqs)):
                if seq in seqs:
                    rows[seqs[seq]][-1].add((rule, code))
        for offset, decision_id, length in self.amendments.take(number):
            # Two rows for one entry: one of them is made up.
            rows[offset] = ("?" if offset in rows else "a", decision_id, length, set())
        # Rows the indexer added after the walk took its snapshot are not checked.
        at_file, at_offset = self.position
        return {o: r for o, r in rows.items() if number < at_file or o < at_offset}

    def _late_failures(self) -> None:
        """The failed rules amendments added are under their decision's row:
        one pass over the failures, for the decisions that have such rules."""
        if not self.late:
            return
        have: dict[str, set[tuple[str, str]]] = {}
        sql = "SELECT d.id, f.rule, f.code FROM decision_failures f JOIN decisions d USING (seq)"
        for decision_id, rule, code in self.db.execute(sql):
            if decision_id in self.late:
                have.setdefault(decision_id, set()).add((rule, code))
        for decision_id, wanted in self.late.items():
            exists = self.db.execute("SELECT 1 FROM decisions WHERE id = ?", (decision_id,))
            if exists.fetchone() is None:
                continue  # an answer for a decision of no row: nothing to filter on
            if not wanted <= have.get(decision_id, set()):
                reason = "the index has lost failed rules of this decision: they are hidden"
                raise _Broken(Problem("", None, 0, reason, decision_id))

    def _rows_without_journal(self) -> int:
        """Rows from before the documents stayed in the journal: not chained."""
        return sum(
            int(self.db.execute(f"SELECT count(*) FROM {table} WHERE file IS NULL").fetchone()[0])
            for table in ("decisions", "amendments")
        )


class _InOrder:
    """A query's rows, led by a number that never goes down (a file, a
    decision's seq), taken a run at a time: `take(k)` gives the rows led by
    k or less that are next, without their leading number."""

    def __init__(self, db: sqlite3.Connection, sql: str, *args: object) -> None:
        self._rows = db.cursor().execute(sql, args)
        self._next: tuple[Any, ...] | None = self._rows.fetchone()

    def take(self, upto: int) -> list[tuple[Any, ...]]:
        taken = []
        while self._next is not None and self._next[0] <= upto:
            taken.append(self._next[1:])
            self._next = self._rows.fetchone()
        return taken


def _facts(entry: bytes) -> _RowFacts | None:
    """What the index should say of a journal entry, without its length:
    ("d", id, at_ms, sender, decision, recipient, failures) or ("a", id,
    failures); None if it is not a trail entry."""
    try:
        parsed = orjson.loads(entry)
        kind, record = parsed[0], parsed[2]
        if kind == "d" and len(parsed) == 3 and isinstance(record, dict):
            fields = (record["decision_id"], parsed[1], record["sender"], record["decision"])
            # The decision's own failed rules (amendments add theirs under its row).
            return ("d", *fields, record["recipient"], set(failures(record)))
        amendment = kind == "a" and isinstance(parsed[1], str)
        if amendment and len(parsed) == 3 and isinstance(record, dict):
            return ("a", parsed[1], set(failures(record)))
    except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
        return None
    return None


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
