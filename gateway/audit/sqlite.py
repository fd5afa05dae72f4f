"""The trail: a journal written before send, indexed in SQLite by a process
of its own.

A decision is durable once its line is in the journal (gateway/audit/
journal.py): one write() on the event loop, no transaction and no wait.
The indexer process (gateway/audit/indexer.py) builds the queryable index
from the journal, told every INDEX_DELAY seconds how far the journal is
whole. Reads first wait until the index holds everything written before
them, so a caller always reads its own writes. When the index cannot be
written (the database held by another process, a full disk, the indexer
gone), new decisions fail closed until it can again; the indexer is
started again if it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.audit import chain, index, verify
from gateway.audit.base import DecisionQuery
from gateway.audit.journal import Journal, Position
from gateway.errors import AuditUnavailable

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Seconds between a write and telling the indexer: small, so that each index
# pass is short (many short passes disturbed requests less than a few long
# ones on a 2-core machine: one-connection p99 1.8 ms at 0.5 s, 1.45 at 0.05,
# 1.2-1.5 at 0.02).
INDEX_DELAY = 0.02
RETRY_DELAY = 1.0  # before starting an indexer that stopped again
MAX_BEHIND = 256 * 1024 * 1024  # journal bytes the index may lag before writes fail
STOP_WAIT = 60.0  # seconds `close` gives the indexer to take in the rest
MAX_AMENDMENTS = 100_000  # upstream answers kept while the journal cannot take them


class SqliteTrail:
    """`path` is the index; the journal lives in the folder beside it
    (`audit.db` -> `audit.journal/`). What a previous process left in the
    journal is indexed first, before anything this one writes."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous_full: bool = False,
        retention_seconds: int | None = None,
    ) -> None:
        self._path = path
        self._full = synchronous_full
        self._retention = retention_seconds
        self._db = index.connect(path, synchronous_full=synchronous_full)  # for reads
        first = index.position(self._db)[0] + 1
        cut = index.pruned(self._db)
        start = chain.GENESIS if cut is None else cut[1]
        self._journal = Journal(index.folder_of(path), numbers_from=first, start=start)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-read")
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-sync")
        self._syncing: asyncio.Future[None] | None = None
        self._synced_up_to = 0  # journal bytes of this process known to be on disk
        self._loop: asyncio.AbstractEventLoop | None = None
        self._output = b""
        self._at: Position = (0, 0)  # how far the indexer said the index is
        self._told: deque[tuple[Position, int]] = deque()  # (position, bytes written then)
        self._caught_up = 0  # journal bytes of this process the index holds
        self._waiting: list[tuple[Position, asyncio.Future[None]]] = []
        self._failure: AuditUnavailable | None = None
        self._due: asyncio.TimerHandle | None = None
        self._amendments: list[bytes] = []  # of this turn (or waiting for the journal)
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self._indexer = self._spawn()
        self._tell("to", self._journal.position)  # what earlier processes left

    # -- writing ---------------------------------------------------------

    async def append(self, record: dict[str, Any], at_ms: int) -> None:
        self._write_after_amendments(chain.decision(record, at_ms))
        if self._full:
            await self._synced()

    async def update(self, decision_id: str, changes: dict[str, Any]) -> None:
        self._write_after_amendments(chain.amendment(decision_id, changes))
        if self._full:
            await self._synced()

    def _write_after_amendments(self, entry: bytes) -> None:
        """`entry` after the amendments of this turn, in one write: the
        journal (and its chain) keeps the order of the calls."""
        if not self._amendments:
            self._write([entry])
            return
        try:
            self._write([*self._amendments, entry])
        except AuditUnavailable:
            self._write_amendments()  # they go in all the same, if the journal takes them
            raise
        self._amendments = []

    def amend(self, decision_id: str, changes: dict[str, Any]) -> None:
        """Written at the end of this event-loop turn, with the other
        amendments of the turn: the reply that follows goes out first,
        and a busy turn makes one write of them all."""
        if not self._amendments:
            self._attached().call_soon(self._write_amendments)
        self._amendments.append(chain.amendment(decision_id, changes))

    def _write_amendments(self) -> None:
        """The amendments waiting, into the journal even while the index
        fails (their messages went out: the answer must be kept, and the
        index takes it in once it can). When the journal itself cannot take
        them they wait, and are tried again; only past MAX_AMENDMENTS, or
        at close, are they given up, and that is logged."""
        entries = self._amendments
        if not entries:
            return
        try:
            self._write(entries, gated=False)
        except AuditUnavailable as exc:
            if self._closed or len(entries) > MAX_AMENDMENTS:
                self._amendments = []
                log.warning("%d upstream answers were not recorded: %s", len(entries), exc)
            elif self._retry is None:
                self._retry = self._attached().call_later(RETRY_DELAY, self._retry_amendments)
            return
        self._amendments = []

    def _retry_amendments(self) -> None:
        self._retry = None
        self._write_amendments()

    def _write(self, entries: list[bytes], gated: bool = True) -> None:
        """Into the journal; `gated`: refused too while the index fails or
        lags (a new decision then fails closed)."""
        if self._closed:
            raise AuditUnavailable("audit trail: closed")
        if gated and self._failure is not None:
            raise AuditUnavailable(str(self._failure))
        behind = self._journal.written - self._caught_up
        if gated and behind > MAX_BEHIND:
            raise AuditUnavailable(f"audit trail: the index is {behind >> 20} MB behind")
        self._journal.write(entries)
        if self._due is None:
            self._due = self._attached().call_later(INDEX_DELAY, self._tell_soon)

    async def _synced(self) -> None:
        """Until the journal is on disk up to here (synchronous_full): one
        fdatasync at a time, and what is written meanwhile waits for the next."""
        target = self._journal.written
        while self._synced_up_to < target:
            if self._syncing is None:
                upto = self._journal.written
                loop = asyncio.get_running_loop()
                self._syncing = loop.run_in_executor(self._syncer, self._journal.sync)
                try:
                    await self._syncing
                finally:
                    self._syncing = None
                self._synced_up_to = max(self._synced_up_to, upto)
            else:
                await asyncio.shield(self._syncing)

    # -- the indexer -----------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "gateway.audit.indexer", str(self._path)]
        if self._full:
            command.append("--synchronous-full")
        if self._retention is not None:
            command += ["--retention-seconds", str(self._retention)]
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as exc:
            raise AuditUnavailable(f"audit trail: cannot start the indexer: {exc}") from None
        assert process.stdin is not None and process.stdout is not None
        os.set_blocking(process.stdin.fileno(), False)
        os.set_blocking(process.stdout.fileno(), False)
        if self._loop is not None:
            self._loop.add_reader(process.stdout.fileno(), self._heard)
        return process

    def _attached(self) -> asyncio.AbstractEventLoop:
        """The event loop, listening to the indexer from the first use on."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            assert self._indexer.stdout is not None
            self._loop.add_reader(self._indexer.stdout.fileno(), self._heard)
        return self._loop

    def _tell_soon(self) -> None:
        self._due = None
        if not self._closed:
            self._tell("to", self._journal.position)

    def _tell(self, verb: str, at: Position) -> None:
        self._told.append((at, self._journal.written))
        assert self._indexer.stdin is not None
        # A full pipe or a gone indexer: a later command, or its restart, says it again.
        with contextlib.suppress(OSError):
            os.write(self._indexer.stdin.fileno(), f"{verb} {at[0]} {at[1]}\n".encode())

    def _heard(self) -> None:
        assert self._indexer.stdout is not None
        try:
            data = os.read(self._indexer.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            self._gone()
            return
        *lines, self._output = (self._output + data).split(b"\n")
        for line in lines:
            verb, _, rest = line.decode("utf-8", "replace").partition(" ")
            if verb == "at":
                number, offset = rest.split()
                self._reached((int(number), int(offset)))
            elif verb == "error":
                self._failed(AuditUnavailable(rest))

    def _reached(self, at: Position) -> None:
        if self._failure is not None:
            log.warning("the audit trail's index is written again")
        self._failure = None
        self._at = max(self._at, at)
        while self._told and self._told[0][0] <= self._at:
            self._caught_up = max(self._caught_up, self._told.popleft()[1])
        still = []
        for target, done in self._waiting:
            if target <= self._at:
                if not done.done():
                    done.set_result(None)
            else:
                still.append((target, done))
        self._waiting = still
        if self._journal.position > self._at and self._due is None and not self._closed:
            self._due = self._attached().call_later(INDEX_DELAY, self._tell_soon)

    def _failed(self, error: AuditUnavailable) -> None:
        """Refuse new decisions until the indexer reports progress again."""
        if self._failure is None:
            log.error("%s; new decisions are refused until the index can be written", error)
        self._failure = error
        waiting, self._waiting = self._waiting, []
        for _, done in waiting:
            if not done.done():
                done.set_exception(AuditUnavailable(str(error)))

    def _gone(self) -> None:
        """The indexer exited: start another one, unless the trail is closing."""
        assert self._loop is not None and self._indexer.stdout is not None
        self._loop.remove_reader(self._indexer.stdout.fileno())
        if self._closed:
            return
        code = self._indexer.wait()
        self._close_pipes(self._indexer)
        self._failed(AuditUnavailable(f"audit trail: the indexer stopped (exit code {code})"))
        self._loop.call_later(RETRY_DELAY, self._restart)

    def _restart(self) -> None:
        if self._closed:
            return
        try:
            self._indexer = self._spawn()
        except AuditUnavailable as exc:
            self._failed(exc)
            assert self._loop is not None
            self._loop.call_later(RETRY_DELAY, self._restart)
            return
        self._tell("to", self._journal.position)

    @staticmethod
    def _close_pipes(process: subprocess.Popen[bytes]) -> None:
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    # -- reading ---------------------------------------------------------

    async def _read(self, read: Callable[..., _T], *args: Any) -> _T:
        """`read(db, *args)` on the reading thread, once the index holds
        everything written before this call."""
        if self._closed:
            raise AuditUnavailable("audit trail: closed")
        self._write_amendments()  # a caller reads its own writes
        if self._failure is not None:
            raise AuditUnavailable(str(self._failure))
        loop = self._attached()
        target = self._journal.position
        if self._at < target:
            done: asyncio.Future[None] = loop.create_future()
            self._waiting.append((target, done))
            self._tell("to", target)
            await done
        return await loop.run_in_executor(self._reader, read, self._db, *args)

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        return await self._read(index.get, self._journal.folder, decision_id)

    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        return await self._read(index.query, self._journal.folder, query)

    async def numbered(self, query: DecisionQuery) -> list[tuple[int, dict[str, Any]]]:
        """`index.numbered` on this trail: records with their sequence numbers."""
        return await self._read(index.numbered, self._journal.folder, query)

    async def ping(self) -> None:
        await self._read(index.ping)

    async def verify(self, head: str | None = None) -> dict[str, Any]:
        await self.ping()  # everything written so far is in the journal and the index
        heads = () if head is None else (head,)
        report = await asyncio.to_thread(verify.trail, self._path, heads)
        return verify.summary([report], head)

    async def close(self) -> None:
        """Everything written is indexed (or left in the journal for the next
        start, if the indexer cannot finish within STOP_WAIT)."""
        if self._closed:
            return
        self._write_amendments()
        self._closed = True
        if self._amendments:  # the journal never took them
            log.warning("%d upstream answers were not recorded at close", len(self._amendments))
            self._amendments = []
        if self._retry is not None:
            self._retry.cancel()
        if self._due is not None:
            self._due.cancel()
        self._tell("stop", self._journal.position)
        indexer = self._indexer
        if self._loop is not None and indexer.stdout is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(indexer.stdout.fileno())
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._reader, indexer.wait, STOP_WAIT)
        except subprocess.TimeoutExpired:
            log.error("the audit indexer did not finish; the journal keeps the rest")
            indexer.kill()
        finally:
            self._close_pipes(indexer)
            self._journal.close()
            await loop.run_in_executor(self._reader, self._db.close)
            self._reader.shutdown()
            self._syncer.shutdown()
