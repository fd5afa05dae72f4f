"""The trails of a data folder, read from outside the gateway (`gateway audit`).

A data folder holds one trail (embedded mode: `audit.db` and its journal) or
one per process (shared mode: `worker-N/audit.db`). This reads their indexes
read-only, so it can run beside a gateway that is writing them, and merges
them newest first by decision id (ids are time-ordered).

It reads what the indexes hold: a running gateway indexes each decision
within a fraction of a second; decisions left in a journal by a gateway that
crashed are indexed when it starts again.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.audit import index
from gateway.audit.base import DecisionQuery
from gateway.errors import AuditUnavailable, GatewayError

PAGE = 500  # decisions read from one index at a time


def index_files(data_dir: Path) -> list[Path]:
    """Every trail index in `data_dir`: its own, then each worker's."""
    if not data_dir.is_dir():
        raise GatewayError(f"{data_dir}: no such data folder")
    found = [data_dir / "audit.db"] if (data_dir / "audit.db").is_file() else []
    workers = [p for p in data_dir.glob("worker-*/audit.db") if p.is_file()]
    found += sorted(workers, key=lambda p: worker_number(p.parent.name))
    if not found:
        raise GatewayError(f"{data_dir}: no audit trail here (no audit.db, no worker-N/audit.db)")
    return found


def worker_number(name: str) -> int:
    """N of a `worker-N` folder's name (other names sort last)."""
    suffix = name.removeprefix("worker-")
    return int(suffix) if suffix.isdigit() else 1 << 62


def records(data_dir: Path, query: DecisionQuery) -> Iterator[dict[str, Any]]:
    """Every matching decision of every trail in `data_dir`, newest first
    (`query.limit` is the page size, not a total)."""
    streams = [_one_trail(path, query) for path in index_files(data_dir)]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda record: str(record["decision_id"]), reverse=True)


def _one_trail(path: Path, query: DecisionQuery) -> Iterator[dict[str, Any]]:
    db = open_index(path)
    try:
        folder = index.folder_of(path)
        page = replace(query, limit=PAGE)
        while True:
            found, more = index.query(db, folder, page)
            yield from found
            if more is None:
                return
            page = replace(page, before=more)
    finally:
        db.close()


def open_index(path: Path) -> sqlite3.Connection:
    """A trail's index, read-only: it may be read beside the gateway that writes it."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        db.execute("SELECT 1 FROM decisions LIMIT 1")
    except sqlite3.Error as exc:
        raise AuditUnavailable(f"audit trail: cannot read {path} ({exc})") from None
    return db
