"""The trail in PostgreSQL: one trail that every gateway process writes, for
operators who run many processes and machines and want one place to audit.

One table holds every entry (decisions and amendments), with the columns
queries filter on and the entry's exact bytes. Each gateway process is a
writer with a chain of its own (gateway/audit/chain.py): its entries are
numbered 1, 2, 3... and linked as the journal's are, so writers never wait
for one another, and a verification walks each writer's chain. A writer's
name is its host and data folder, which one process owns at a time, so a
restart takes its chain up where it stopped.

Writes are group commits: what the requests of a moment append goes in one
statement, in order, and each append returns once it is committed (before
anything is sent). If a commit fails, its appends fail (nothing is sent for
them) and the writer reads its chain's head again before the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from gateway.audit import chain
from gateway.audit.base import DecisionQuery, damaged, failures, readable
from gateway.audit.retention import Pruned
from gateway.audit.verify import Problem, Report, summary
from gateway.errors import AuditUnavailable, translated

log = logging.getLogger(__name__)

TIMEOUT = 2.0  # seconds, for a connection and for each statement
PAGE = 500  # entries read at a time by a verification
BATCH = 5000  # rows removed per statement by retention
PRUNE_EVERY = 3600.0  # seconds between looks for records past the retention
RETRY_DELAY = 1.0  # seconds before upstream answers that failed to commit are tried again
MAX_AMENDMENTS = 100_000  # such answers kept waiting; past it, they are given up


def _unavailable(exc: BaseException) -> AuditUnavailable:
    """What went wrong, in words: a timeout says nothing by itself."""
    if isinstance(exc, TimeoutError):
        said = f"no answer within {TIMEOUT:g} s"
    else:
        said = str(exc) or type(exc).__name__
    return AuditUnavailable(f"audit trail (PostgreSQL): {said}")


# asyncpg's and the network's errors become AuditUnavailable here and nowhere else.
_translated = translated(
    (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError),
    _unavailable,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    seq BIGSERIAL PRIMARY KEY,
    writer TEXT NOT NULL,
    n BIGINT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    at_ms BIGINT,
    sender TEXT,
    decision TEXT,
    recipient TEXT,
    rules TEXT[] NOT NULL,
    codes TEXT[] NOT NULL,
    entry BYTEA NOT NULL,
    link BYTEA NOT NULL,
    UNIQUE (writer, n)
);
CREATE UNIQUE INDEX IF NOT EXISTS {t}_decision ON {t} (id) WHERE kind = 'd';
CREATE INDEX IF NOT EXISTS {t}_amendment ON {t} (id, seq) WHERE kind = 'a';
CREATE INDEX IF NOT EXISTS {t}_recipient ON {t} (recipient, seq) WHERE kind = 'd';
CREATE INDEX IF NOT EXISTS {t}_sender ON {t} (sender, seq) WHERE kind = 'd';
CREATE INDEX IF NOT EXISTS {t}_at ON {t} (at_ms) WHERE kind = 'd';
CREATE INDEX IF NOT EXISTS {t}_rules ON {t} USING GIN (rules);
CREATE INDEX IF NOT EXISTS {t}_codes ON {t} USING GIN (codes);
-- Retention: a writer's entries up to upto_n were removed; its chain goes on from `link`.
CREATE TABLE IF NOT EXISTS {t}_pruned (
    writer TEXT NOT NULL,
    upto_n BIGINT NOT NULL,
    link BYTEA NOT NULL,
    decisions BIGINT NOT NULL,
    amendments BIGINT NOT NULL,
    before_ms BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (writer, upto_n)
);
"""

_Row = tuple[Any, ...]


class _Pending:
    """An entry waiting for the next commit, and who waits for it."""

    __slots__ = ("done", "entry", "row")

    def __init__(self, entry: bytes, row: _Row, done: asyncio.Future[None] | None) -> None:
        self.entry, self.row, self.done = entry, row, done


class PostgresTrail:
    """Open with `await PostgresTrail.open(url, table, writer)`; without a
    writer it only reads (an auditor's command needs no write grant)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str,
        writer: str | None,
        retention_seconds: int | None = None,
    ) -> None:
        self._pool = pool
        self._retention = retention_seconds
        self._pruning: asyncio.Task[None] | None = None
        self._t = table
        self._writer = writer
        self._head = chain.GENESIS
        self._n = 0  # the number of the writer's last committed entry
        self._pending: list[_Pending] = []
        self._unsent: list[_Pending] = []  # upstream answers whose commit failed
        self._retry: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False
        self._ready = False  # the table is there and the head is read
        self._insert_sql = (
            f"INSERT INTO {table} (writer, n, kind, id, at_ms, sender, decision, recipient,"
            " rules, codes, entry, link)"
            " SELECT w, n, k, i, a, s, d, r,"
            " ARRAY(SELECT jsonb_array_elements_text(ru::jsonb)),"
            " ARRAY(SELECT jsonb_array_elements_text(co::jsonb)), e, l"
            " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],"
            " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[],"
            " $12::bytea[]) AS u(w, n, k, i, a, s, d, r, ru, co, e, l)"
        )
        self._preparing = asyncio.Lock()

    @classmethod
    @_translated
    async def open(
        cls,
        url: str,
        table: str,
        writer: str | None = None,
        retention_seconds: int | None = None,
    ) -> PostgresTrail:
        """With `retention_seconds`, the trail removes older records every hour."""
        # min_size 0: making the pool connects nowhere, so a gateway starts
        # while PostgreSQL is down, and refuses decisions (503) until it answers.
        pool = await asyncpg.create_pool(
            url, min_size=0, max_size=4, timeout=TIMEOUT, command_timeout=TIMEOUT
        )
        trail = cls(pool, table, writer, retention_seconds)
        if writer is None:
            return trail
        try:
            await trail._prepare()
        except AuditUnavailable as exc:
            log.error("%s; new decisions are refused until it answers", exc)
        if retention_seconds is not None:
            trail._pruning = asyncio.get_running_loop().create_task(trail._prune_often())
        return trail

    @_translated
    async def _prepare(self) -> None:
        """Before the first write, and after a failed one: the table, and the
        writer's head as committed."""
        if self._ready or self._writer is None:
            return
        async with self._preparing:
            if self._ready:
                return
            async with self._pool.acquire() as db, db.transaction():
                # One process creates the table; the others wait, then find it.
                await db.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._t)
                await db.execute(_SCHEMA.format(t=self._t))
            await self._load_head()
            self._ready = True

    async def _load_head(self) -> None:
        row = await self._pool.fetchrow(
            f"SELECT n, link FROM {self._t} WHERE writer = $1 ORDER BY n DESC LIMIT 1",
            self._writer,
        )
        self._n, self._head = (0, chain.GENESIS) if row is None else (row[0], bytes(row[1]))

    # -- writing ---------------------------------------------------------

    async def append(self, record: dict[str, Any], at_ms: int) -> None:
        row = ("d", record["decision_id"], at_ms, record["sender"], record["decision"])
        await self._commit(chain.decision(record, at_ms), (*row, record["recipient"]), record)

    async def update(self, decision_id: str, changes: dict[str, Any]) -> None:
        row = ("a", decision_id, None, None, None, None)
        await self._commit(chain.amendment(decision_id, changes), row, changes)

    def amend(self, decision_id: str, changes: dict[str, Any]) -> None:
        row = ("a", decision_id, None, None, None, None)
        try:
            self._queue(chain.amendment(decision_id, changes), row, changes, None)
        except AuditUnavailable as exc:  # the decision is recorded; only this answer is lost
            log.warning("an upstream answer was not recorded: %s", exc)

    async def _commit(self, entry: bytes, row: _Row, record: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue(entry, row, record, done)
        await done

    def _queue(
        self,
        entry: bytes,
        row: _Row,
        record: dict[str, Any],
        done: asyncio.Future[None] | None,
    ) -> None:
        if self._closed:
            raise AuditUnavailable("audit trail: closed")
        if self._writer is None:
            raise AuditUnavailable("audit trail (PostgreSQL): opened to read only")
        pairs = sorted(set(failures(record)))
        rules, codes = [rule for rule, _ in pairs], [code for _, code in pairs]
        self._pending.append(_Pending(entry, (*row, rules, codes), done))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Commit what is pending, a batch at a time, in order, until none is."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._insert(batch)
                except Exception as exc:
                    failure = exc if isinstance(exc, AuditUnavailable) else None
                    self._failed(batch, failure or AuditUnavailable(f"audit trail: {exc!r}"))
                    continue
                for item in batch:
                    if item.done is not None and not item.done.done():
                        item.done.set_result(None)
        finally:
            self._flushing = None

    @_translated
    async def _insert(self, batch: list[_Pending]) -> None:
        await self._prepare()
        head, n, rows = self._head, self._n, []
        for item in batch:
            head, n = chain.link(head, item.entry), n + 1
            rows.append((self._writer, n, *item.row, item.entry, head))
        # One statement for the whole batch: one round trip, and atomic by
        # itself (a transaction around many inserts took three round trips).
        columns = [list(column) for column in zip(*rows, strict=True)]
        for failed in (8, 9):  # the rules and codes of each row, as JSON arrays
            columns[failed] = [orjson.dumps(names).decode() for names in columns[failed]]
        await self._pool.execute(self._insert_sql, *columns)
        self._head, self._n = head, n

    def _failed(self, batch: list[_Pending], exc: AuditUnavailable) -> None:
        answers = []
        for item in batch:
            if item.done is None:
                answers.append(item)
            elif not item.done.done():
                item.done.set_exception(AuditUnavailable(str(exc)))
        # Their messages went out: the answers are tried again, not dropped.
        # (Should the failed commit have gone through after all, an answer is
        # then recorded twice, which reads the same.)
        if self._closed or len(self._unsent) + len(answers) > MAX_AMENDMENTS:
            if answers:
                log.warning("%d upstream answers were not recorded: %s", len(answers), exc)
        else:
            self._unsent += answers
            if self._unsent and self._retry is None:
                loop = asyncio.get_running_loop()
                self._retry = loop.call_later(RETRY_DELAY, self._send_again)
        # The commit may have gone through after all: the next batch reads
        # the head again first (see _prepare).
        self._ready = False

    def _send_again(self) -> None:
        self._retry = None
        again, self._unsent = self._unsent, []
        self._pending[:0] = again
        if again and self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _written(self) -> None:
        """Until everything appended so far is committed (or failed)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    # -- reading ---------------------------------------------------------

    @_translated
    async def get(self, decision_id: str) -> dict[str, Any] | None:
        await self._written()
        row = await self._pool.fetchrow(
            f"SELECT id, entry FROM {self._t} WHERE kind = 'd' AND id = $1", decision_id
        )
        if row is None:
            return None
        return (await self._merged([readable(row[0], _document(row[1]))]))[0]

    @_translated
    async def query(self, query: DecisionQuery) -> tuple[list[dict[str, Any]], int | None]:
        await self._written()
        where, args = self._where(query)
        rows = await self._pool.fetch(
            f"SELECT seq, id, entry FROM {self._t} d WHERE {where}"
            f" ORDER BY seq DESC LIMIT ${len(args) + 1}",
            *args,
            query.limit + 1,
        )
        more: int | None = rows[query.limit - 1][0] if len(rows) > query.limit else None
        records = [readable(row[1], _document(row[2])) for row in rows[: query.limit]]
        return await self._merged(records), more

    def _where(self, q: DecisionQuery) -> tuple[str, list[Any]]:
        clauses, args = ["kind = 'd'"], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        for column, value in (("recipient", q.recipient), ("sender", q.sender)):
            if value is not None:
                clauses.append(f"{column} = {arg(value)}")
        if q.decision is not None:
            clauses.append(f"decision = {arg(q.decision)}")
        for sql, bound in (("seq <", q.before), ("at_ms >=", q.since_ms), ("at_ms <", q.until_ms)):
            if bound is not None:
                clauses.append(f"{sql} {arg(bound)}")
        for column, value in (("rules", q.rule), ("codes", q.code)):
            if value is not None:
                mark = arg(value)
                clauses.append(
                    f"({mark} = ANY(d.{column}) OR EXISTS (SELECT 1 FROM {self._t} a"
                    f" WHERE a.kind = 'a' AND a.id = d.id AND {mark} = ANY(a.{column})))"
                )
        return " AND ".join(clauses), args

    async def _merged(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_id = {record["decision_id"]: record for record in records}
        if by_id:
            rows = await self._pool.fetch(
                f"SELECT id, entry FROM {self._t} WHERE kind = 'a' AND id = ANY($1::text[])"
                " ORDER BY seq",
                list(by_id),
            )
            for decision_id, entry in rows:
                changes = _document(entry)
                by_id[decision_id].update(damaged(decision_id) if changes is None else changes)
        return records

    @_translated
    async def ping(self) -> None:
        await self._written()
        await self._prepare()
        await self._pool.fetchval("SELECT 1")

    # -- verifying -------------------------------------------------------

    async def verify(self, head: str | None = None) -> dict[str, Any]:
        return summary(await self.reports(() if head is None else (head,)), head)

    @_translated
    async def reports(self, heads: Sequence[str] = ()) -> list[Report]:
        """Each writer's chain, checked (see gateway/audit/verify.py)."""
        await self._written()
        writers = [
            row[0] for row in await self._pool.fetch(f"SELECT DISTINCT writer FROM {self._t}")
        ]
        return [await self._report(writer, set(heads)) for writer in sorted(writers)]

    async def _report(self, writer: str, heads: set[str]) -> Report:
        report = Report(trail=f"{self._t}:{writer}")
        previous, after = chain.GENESIS, 0
        cut = await self._cut(writer)
        if cut is not None:  # retention removed the start: the chain goes on from its link
            after, previous, report.pruned = cut
        sql = (
            f"SELECT n, kind, id, at_ms, sender, decision, recipient, rules, codes, entry, link"
            f" FROM {self._t} WHERE writer = $1 AND n > $2 ORDER BY n LIMIT {PAGE}"
        )
        while rows := await self._pool.fetch(sql, writer, after):
            for row in rows:
                problem = _problem(row, after, previous)
                if problem is not None:
                    report.problem = Problem(writer, row[0], 0, problem, row[2])
                    return report
                previous, after = bytes(row[10]), row[0]
                report.entries += 1
                report.decisions += row[1] == "d"
                report.amendments += row[1] == "a"
                report.head = previous.hex()
                if report.head in heads:
                    report.heads_found.add(report.head)
        return report

    # -- retention -------------------------------------------------------

    async def _cut(self, writer: str) -> tuple[int, bytes, int] | None:
        """Where retention left a writer's chain: the last number removed, the
        link the chain goes on from, and the decisions removed in all."""
        row = await self._pool.fetchrow(
            f"SELECT upto_n, link, (SELECT sum(decisions) FROM {self._t}_pruned WHERE writer = $1)"
            f" FROM {self._t}_pruned WHERE writer = $1 ORDER BY upto_n DESC LIMIT 1",
            writer,
        )
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))

    @_translated
    async def prune(self, cutoff_ms: int) -> Pruned:
        """Remove each writer's entries older than `cutoff_ms`: the leading
        run of its chain before its first younger decision, never its last
        entry (which carries its head). One process at a time does it."""
        totals = [0, 0]
        async with self._pool.acquire() as db:
            lock = f"{self._t}:retention"
            if not await db.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock):
                return Pruned(0, 0, 0)  # another process is at it
            try:
                for (writer,) in await db.fetch(f"SELECT DISTINCT writer FROM {self._t}"):
                    counts = await self._prune_writer(db, writer, cutoff_ms)
                    totals = [totals[0] + counts[0], totals[1] + counts[1]]
            finally:
                await db.fetchval("SELECT pg_advisory_unlock(hashtext($1))", lock)
        return Pruned(0, *totals)

    async def _prune_writer(
        self, db: asyncpg.Connection, writer: str, cutoff_ms: int
    ) -> tuple[int, int]:
        t = self._t
        cut = await self._cut(writer)
        done = cut[0] if cut is not None else 0
        young, last = await db.fetchrow(
            f"SELECT min(n) FILTER (WHERE kind = 'd' AND at_ms >= $2), max(n)"
            f" FROM {t} WHERE writer = $1",
            writer,
            cutoff_ms,
        )
        upto = min(last - 1, (young - 1) if young is not None else last)
        counts = (0, 0)
        if upto > done:
            # The cut is recorded first: an interrupted removal is finished next time.
            row = await db.fetchrow(
                f"SELECT (SELECT link FROM {t} WHERE writer = $1 AND n = $3),"
                f" count(*) FILTER (WHERE kind = 'd'), count(*) FILTER (WHERE kind = 'a')"
                f" FROM {t} WHERE writer = $1 AND n > $2 AND n <= $3",
                writer,
                done,
                upto,
            )
            counts = (int(row[1]), int(row[2]))
            await db.execute(
                f"INSERT INTO {t}_pruned VALUES ($1, $2, $3, $4, $5, $6, $7)",
                writer, upto, bytes(row[0]), *counts, cutoff_ms, int(time.time() * 1000),
            )  # fmt: skip
            done = upto
        while done:  # a few thousand rows a statement: writers never wait long
            removed = await db.execute(
                f"DELETE FROM {t} WHERE seq IN (SELECT seq FROM {t}"
                f" WHERE writer = $1 AND n <= $2 LIMIT {BATCH})",
                writer,
                done,
            )
            if int(removed.split()[-1]) < BATCH:
                break
        return counts

    async def _prune_often(self) -> None:
        """Every PRUNE_EVERY seconds, the records past the retention."""
        assert self._retention is not None
        while True:
            try:
                await self.prune(int((time.time() - self._retention) * 1000))
            except AuditUnavailable as exc:
                # Records kept longer than asked: nothing to stop sending for.
                log.warning("audit retention: %s", exc)
            await asyncio.sleep(PRUNE_EVERY)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pruning is not None:
            self._pruning.cancel()
        if self._retry is not None:
            self._retry.cancel()
        self._send_again()  # one last try for answers still waiting
        try:
            await self._written()
        finally:
            await self._pool.close()


def _problem(row: asyncpg.Record, after: int, previous: bytes) -> str | None:
    """What is wrong with a writer's entry, given the one before it."""
    n, kind, decision_id, at_ms, sender, decision, recipient, rules, codes, entry, link = row
    if n != after + 1:
        return f"entries {after + 1} to {n - 1} of this writer are missing: they were removed"
    if chain.link(previous, bytes(entry)) != bytes(link):
        return (
            "the entry does not match its link: it was changed, or entries before it were"
            " removed or inserted"
        )
    try:
        parsed = orjson.loads(bytes(entry))
        document = parsed[2]
        kind_said = parsed[0]
        said: tuple[Any, ...] = (
            kind_said,
            parsed[1] if kind_said == "a" else document["decision_id"],
        )
        if kind_said == "d":
            said += (parsed[1], document["sender"], document["decision"], document["recipient"])
        else:
            said += (None, None, None, None)
        pairs = Counter(set(failures(document)))
    except (orjson.JSONDecodeError, IndexError, KeyError, TypeError, AttributeError):
        return "not a trail entry"
    # Each failed rule once, its code beside it: arrays of other lengths, or
    # with more or fewer pairs, were changed.
    paired = len(rules) == len(codes) and Counter(zip(rules, codes, strict=True)) == pairs
    if said != (kind, decision_id, at_ms, sender, decision, recipient) or not paired:
        return "the row's columns say otherwise than its entry: they were changed"
    return None


def _document(entry: bytes) -> dict[str, Any] | None:
    """The record (or the changes) an entry holds; None if it holds none."""
    try:
        document = orjson.loads(bytes(entry))[2]
    except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
        return None
    return document if isinstance(document, dict) else None
