"""WAL checkpoints off the request path.

In WAL mode a commit appends to the log; a checkpoint copies the log into the
database and, with synchronous=NORMAL, is the moment SQLite fsyncs. Left to
SQLite, that happens inside whichever commit crosses the threshold, and that
request waits for the disk. Here a thread of its own checkpoints on a timer,
with its own connection, so no request ever does; often (every few tens of
milliseconds in the indexer), so that each checkpoint copies little.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path


class Checkpointer:
    def __init__(self, path: Path, every: float = 1.0) -> None:
        self._path = path
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, timeout=5)
        seen = None
        try:
            while not self._stop.wait(self._every):
                # Only after someone committed: an idle trail costs nothing.
                with contextlib.suppress(sqlite3.Error):
                    version = db.execute("PRAGMA data_version").fetchone()[0]
                    if version != seen:
                        self._checkpoint(db, "PASSIVE")
                        seen = version
            self._checkpoint(db, "TRUNCATE")
        finally:
            db.close()

    @staticmethod
    def _checkpoint(db: sqlite3.Connection, mode: str) -> None:
        # Busy or gone: the next round tries again; the log only grows meanwhile.
        with contextlib.suppress(sqlite3.Error):
            db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
