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
  entry (id, time, sender, decision, recipient, failed rules, the record
  it holds), a row pointing where no entry starts, or into a file that is
  gone, a row for no entry at all (inserted) unless it is one of the rows
  made before the documents stayed in the journal;
- a journal shorter than the index says it has read (its end was cut off).

The index is read in one snapshot (a read transaction), so what it says
and how far it has read agree, even beside an indexer at work.

Cutting off the newest entries leaves a chain that is whole: only a head
(a link) kept elsewhere shows that, which is why the report gives the head
and checks the ones it is given.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.audit import chain, index, journal, reader
from gateway.audit.base import failures
from gateway.errors import AuditUnavailable

# What an index row says of its entry: kind, id, length, and for decisions
# at_ms, sender, decision, recipient; then the document it holds ('' if it
# holds none) and its failed rules.
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
        db.execute("BEGIN")  # one snapshot: the rows and the position they were read up to
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
        # Failed rules a decision's row holds beyond its entry's, by id: its
        # amendments must hold them (the problem to name if they do not).
        self.added: dict[str, tuple[Problem, set[tuple[str, str]]]] = {}
        # The position is read before the sizes: what it covers is in the snapshot.
        self.position = index.position(db)
        # Retention removed the files up to `upto`: the chain goes on from its link.
        cut = index.pruned(db)
        self.upto = 0
        if cut is not None:
            self.upto, self.previous, report.pruned = cut
            self.linked = self.previous != chain.GENESIS
        self.every = journal.file_numbers(folder)
        self.numbers = [n for n in self.every if n > self.upto]
        self.sizes = {n: _size(journal.path_of(folder, n)) for n in self.numbers}
        # The index's rows, in journal order: file by file as the walk goes.
        self.decisions = _InOrder(
            db,
            "SELECT file, file, offset, id, length, at_ms, sender, decision, recipient, doc, seq"
            " FROM decisions WHERE file > ? ORDER BY seq",
            self.upto,
        )
        self.amendments = _InOrder(
            db,
            "SELECT file, file, offset, id, length, doc FROM amendments WHERE file > ? ORDER BY n",
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
        self._failures_of_amendments()
        self.report.unchained += self._rows_from_before_the_journal()

    def _files_the_index_needs(self) -> None:
        """Every file the index points into is there, and as long as it read.
        (Rows of files retention removed are gone before their files are.)"""
        at_file, at_offset = self.position
        wanted = {
            row[0]
            for table in ("decisions", "amendments")
            for row in self.db.execute(f"SELECT DISTINCT file FROM {table} WHERE file IS NOT NULL")
        }
        if at_offset > 0:
            wanted.add(at_file)
        for number in sorted(wanted - set(self.every)):
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
            if (number, left) >= self.position:
                reason = "the index has a row for an entry it has not read yet: it was inserted"
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
        opened = _opened(entry)
        if opened is None:
            raise broken("not a trail entry")
        facts, document = opened
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
        said, doc, had = row[:-2], row[-2], row[-1]
        # A decision's row holds its own failed rules, and its amendments'.
        bears_out = said == (*facts[:2], len(line), *facts[2:-1])
        if not bears_out or not _holds(doc, document) or not own <= had:
            raise broken("the index row of this entry says otherwise: it was changed", decision_id)
        if had - own:  # its amendments must hold them: checked once the walk is over
            reason = (
                "the index row of this entry says otherwise: it holds failed rules that"
                " neither the entry nor its amendments hold (they were added)"
            )
            self.added[decision_id] = (
                Problem(name, line_no, offset, reason, decision_id),
                had - own,
            )

    def _rows(self, number: int) -> dict[int, _RowFacts]:
        """The index rows that point into file `number`, by offset: taken from
        the index in its own order (rows go in in journal order), so the
        walk reads each table once, whatever the number of files."""
        rows: dict[int, _RowFacts] = {}
        seqs: dict[int, int] = {}  # decision seq -> offset
        for file, offset, decision_id, length, *columns, doc, seq in self.decisions.take(number):
            self._in_order(file, number, offset, decision_id)
            # Two rows for one entry: one of them is made up.
            kind = "?" if offset in rows else "d"
            rows[offset] = (kind, decision_id, length, *columns, doc, set())
            seqs[seq] = offset
        if seqs:
            for seq, rule, code in self.failures.take(max(seqs)):
                if seq in seqs:
                    rows[seqs[seq]][-1].add((rule, code))
        for file, offset, decision_id, length, doc in self.amendments.take(number):
            self._in_order(file, number, offset, decision_id)
            rows[offset] = ("?" if offset in rows else "a", decision_id, length, doc, set())
        return rows

    def _in_order(self, file: int, number: int, offset: int, decision_id: str) -> None:
        """The indexer adds rows in journal order: a row for an earlier file,
        after rows for this one, is not one of its own."""
        if file != number:
            name = journal.path_of(self.folder, file).name
            reason = "the index has a row out of journal order: it was inserted"
            raise _Broken(Problem(name, None, offset, reason, decision_id))

    def _failures_of_amendments(self) -> None:
        """A decision's row holds the failed rules of its amendments too: no
        more than they hold (checked against what the walk saw of them), and
        no fewer (one pass over the failures, for the decisions that have
        such rules)."""
        for decision_id, (problem, extra) in self.added.items():
            if not extra <= self.late.get(decision_id, set()):
                raise _Broken(problem)
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

    def _rows_from_before_the_journal(self) -> int:
        """Rows made before the documents stayed in the journal hold their
        documents and point into no file; they are counted as unchained.
        Such rows went in before any row that points into the journal, each
        amendment among them amends a decision among them, and each holds a
        document that says what its row says. Any other row that points into
        no file stands for no entry of the journal: it was inserted."""
        count = 0
        first = self._first_in_journal("decisions", "seq")
        sql = (
            "SELECT seq, id, sender, decision, recipient, doc FROM decisions"
            " WHERE file IS NULL ORDER BY seq"
        )
        for seq, decision_id, *columns, doc in self.db.execute(sql):
            if not 0 < seq < first:
                reason = (
                    "the index has a row for a decision the journal does not hold: it was inserted"
                )
                raise _Broken(Problem("", None, 0, reason, decision_id))
            record = index.loaded(doc)
            said = None if record is None else [record.get(key) for key in _SAID]
            if said != [decision_id, *columns]:
                reason = "the index row of this decision says otherwise than the record it holds"
                raise _Broken(Problem("", None, 0, reason, decision_id))
            count += 1
        first = self._first_in_journal("amendments", "n")
        sql = (
            "SELECT a.n, a.id, a.doc, d.seq IS NOT NULL AND d.file IS NULL FROM amendments a"
            " LEFT JOIN decisions d USING (id) WHERE a.file IS NULL ORDER BY a.n"
        )
        for n, decision_id, doc, of_an_old_decision in self.db.execute(sql):
            if not (0 < n < first and of_an_old_decision):
                reason = (
                    "the index has an amendment of this decision that the journal does not"
                    " hold: it was inserted"
                )
                raise _Broken(Problem("", None, 0, reason, decision_id))
            if index.loaded(doc) is None:
                reason = "the index holds an amendment of this decision that is no record"
                raise _Broken(Problem("", None, 0, reason, decision_id))
            count += 1
        return count

    def _first_in_journal(self, table: str, key: str) -> int:
        """The first row of `table` that points into the journal, by `key`."""
        sql = f"SELECT {key} FROM {table} WHERE file IS NOT NULL ORDER BY {key} LIMIT 1"
        row = self.db.execute(sql).fetchone()
        return sys.maxsize if row is None else int(row[0])


# What a decision's row says that its document says too.
_SAID = ("decision_id", "sender", "decision", "recipient")


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


def _opened(entry: bytes) -> tuple[_RowFacts, dict[str, Any]] | None:
    """What the index should say of a journal entry, without its length:
    ("d", id, at_ms, sender, decision, recipient, failures) or ("a", id,
    failures), and the record (or the changes) it holds; None if it is not
    a trail entry."""
    try:
        parsed = orjson.loads(entry)
        kind, record = parsed[0], parsed[2]
        if len(parsed) != 3 or not isinstance(record, dict):
            return None
        if kind == "d":
            fields = (record["decision_id"], parsed[1], record["sender"], record["decision"])
            # The decision's own failed rules (amendments add theirs under its row).
            return ("d", *fields, record["recipient"], set(failures(record))), record
        if kind == "a" and isinstance(parsed[1], str):
            return ("a", parsed[1], set(failures(record))), record
    except (orjson.JSONDecodeError, IndexError, KeyError, TypeError, AttributeError):
        return None
    return None


def _holds(doc: object, document: dict[str, Any]) -> bool:
    """Whether an index row's document is its entry's `document`, whole. The
    indexer leaves it empty (the journal holds it); anything else in it was
    put there by someone else, and must at least say the same."""
    return doc == "" or index.loaded(doc) == document


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
