"""The decisions an HTTP query reads: one trail, or every worker's on the machine.

In shared mode each worker keeps its trail in `<data_dir>/worker-N`, and a
query asked of one worker answers for all of them: its own trail (read once
its index holds what it wrote) and the other workers' indexes, read-only,
merged newest first by decision id, as `gateway audit query` merges them. A
page's cursor then holds each trail's place, `N:seq,...` (`N:0` for a trail
with nothing more), so paging neither repeats nor skips a decision.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from gateway.audit import index, reader
from gateway.audit.base import AuditTrail, DecisionQuery
from gateway.audit.sqlite import SqliteTrail
from gateway.errors import InputError

Page = tuple[list[dict[str, Any]], str | None]
_PLACE = re.compile(r"([0-9]{1,3}):([0-9]{1,18})")
_BAD_CURSOR = InputError("cursor: not a cursor from a previous page", {"cursor": "invalid"})


class Decisions(Protocol):
    async def page(self, query: DecisionQuery, cursor: str | None) -> Page:
        """A page of matching decisions, newest first, and the cursor of the
        next one (None after the last); InputError for a cursor that is none."""
        ...

    async def get(self, decision_id: str) -> dict[str, Any] | None: ...


class OneTrail:
    """A trail that holds every decision the query may ask for."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    async def page(self, query: DecisionQuery, cursor: str | None) -> Page:
        # A 64-bit number: a longer one is not from a previous page (and the
        # trail's SQLite could not take it).
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) < 19):
            raise _BAD_CURSOR
        records, more = await self.trail.query(
            replace(query, before=int(cursor) if cursor else None)
        )
        return records, str(more) if more else None

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        return await self.trail.get(decision_id)


class WorkerTrails:
    """This worker's trail and the other workers' (worker number -> index)."""

    def __init__(self, own: SqliteTrail, number: int, others: dict[int, Path]) -> None:
        self.own, self.number, self.others = own, number, others

    async def page(self, query: DecisionQuery, cursor: str | None) -> Page:
        places = _places(cursor)
        numbers = sorted([self.number, *self.others])
        fetched = {
            n: await self._numbered(n, replace(query, before=places.get(n))) for n in numbers
        }
        streams = [[(n, seq, record) for seq, record in fetched[n]] for n in numbers]
        merged = heapq.merge(*streams, key=lambda item: str(item[2]["decision_id"]), reverse=True)
        taken = list(itertools.islice(merged, query.limit))
        last = {n: seq for n, seq, _ in taken}  # each trail's rows are taken in its order
        more = False
        for n, rows in fetched.items():
            if n in last:
                places[n] = last[n]
            if rows and last.get(n) != rows[-1][0]:
                more = True  # some of its rows are not shown yet
            elif len(rows) == query.limit:
                more = True  # all shown, and there may be more behind them
            else:
                places[n] = 0  # nothing more there
        records = [record for _, _, record in taken]
        if not more:
            return records, None
        # A trail with no place yet (none of its rows shown) starts from its top.
        return records, ",".join(f"{n}:{places[n]}" for n in numbers if n in places)

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        found = await self.own.get(decision_id)
        for path in self.others.values():
            if found is not None:
                break
            found = await asyncio.to_thread(_read, path, index.get, decision_id)
        return found

    async def _numbered(self, n: int, query: DecisionQuery) -> list[tuple[int, Any]]:
        if n == self.number:
            return await self.own.numbered(query)
        return await asyncio.to_thread(_read, self.others[n], index.numbered, query)


def _number(folder: str) -> int:
    return reader.worker_number(folder) if folder.startswith("worker-") else 0


def _places(cursor: str | None) -> dict[int, int]:
    if cursor is None:
        return {}
    places = {}
    for part in cursor.split(","):
        found = _PLACE.fullmatch(part)
        if found is None:
            raise _BAD_CURSOR
        places[int(found[1])] = int(found[2])
    return places


def _read(path: Path, read: Any, *args: Any) -> Any:
    """`read(db, folder, *args)` on another worker's index, read-only."""
    db = reader.open_index(path)
    try:
        return read(db, index.folder_of(path), *args)
    finally:
        db.close()


def worker_trails(own: SqliteTrail, worker: str, others: list[Path]) -> WorkerTrails:
    """This worker's trail (it is worker-`worker`) beside the others' indexes:
    each numbered by its worker-N folder, and 0 for one in the data folder
    itself (left by the embedded mode)."""
    found = {
        reader.worker_number(path.parent.name)
        if path.parent.name.startswith("worker-")
        else 0: path
        for path in others
    }
    return WorkerTrails(own, int(worker), found)
