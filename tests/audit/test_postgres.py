"""The trail in PostgreSQL: writers' chains, what altering the table shows,
failing closed and coming back. A real PostgreSQL over a socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from gateway.audit import DecisionQuery, postgres
from gateway.audit.base import DAMAGED
from gateway.audit.postgres import PostgresTrail
from gateway.errors import AuditUnavailable
from tests.audit.test_trail import opted_out, record
from tests.postgres_support import (
    POSTGRES_URL,
    accept_inserts,
    drop_table,
    execute,
    new_table,
    refuse_inserts,
    require_postgres,
)


@pytest.fixture
async def table() -> AsyncIterator[str]:
    await require_postgres()
    name = new_table()
    yield name
    await drop_table(name)


async def filled(table: str) -> None:
    """Two writers, one of them restarted, each with decisions and answers."""
    for writer, first in (("host:a", 1), ("host:b", 10), ("host:a", 20)):
        trail = await PostgresTrail.open(POSTGRES_URL, table, writer=writer)
        for n in range(first, first + 3):
            await trail.append(opted_out(n) if n % 2 else record(n), 1000 * n)
        trail.amend(f"id{first:03d}", {"upstream": {"status": 201}})
        await trail.close()


async def reports(table: str, *heads: str) -> dict[str, dict[str, object]]:
    reader = await PostgresTrail.open(POSTGRES_URL, table)
    try:
        answer = await reader.verify(*heads)
    finally:
        await reader.close()
    return {str(t["trail"]).split(":", 1)[1]: t for t in answer["trails"]} | {"": answer}


async def test_each_writer_has_a_chain_that_goes_on_after_a_restart(table: str) -> None:
    await filled(table)
    found = await reports(table)
    assert found[""]["intact"] is True
    assert (found["host:a"]["entries"], found["host:a"]["decisions"]) == (8, 6)
    assert (found["host:b"]["entries"], found["host:b"]["amendments"]) == (4, 1)
    reader = await PostgresTrail.open(POSTGRES_URL, table)
    listed, _ = await reader.query(DecisionQuery(limit=100))
    await reader.close()
    assert len(listed) == 9 and listed[-1]["upstream"] == {"status": 201}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            "UPDATE {t} SET entry = convert_to(replace(convert_from(entry, 'UTF8'), 'acme',"
            " 'acne'), 'UTF8') WHERE writer = 'host:a' AND n = 2",
            "does not match its link",
        ),
        ("DELETE FROM {t} WHERE writer = 'host:a' AND n = 2", "entries 2 to 2 of this writer"),
        ("UPDATE {t} SET decision = 'allow' WHERE writer = 'host:a' AND n = 3", "columns say"),
        (
            "UPDATE {t} SET codes = '{{}}', rules = '{{}}' WHERE writer = 'host:a' AND n = 3",
            "columns",
        ),
        (  # a code more than there are rules
            "UPDATE {t} SET codes = codes || '{{opted_out}}'::text[]"
            " WHERE writer = 'host:a' AND n = 3",
            "columns",
        ),
    ],
)
async def test_an_altered_table_is_found(table: str, change: str, reason: str) -> None:
    await filled(table)
    await execute(change.format(t=table))
    found = await reports(table)
    assert found[""]["intact"] is False and found["host:b"]["problem"] is None
    problem = found["host:a"]["problem"]
    assert isinstance(problem, dict) and reason in problem["reason"]
    assert problem["file"] == "host:a" and problem["line"] in (2, 3)


async def test_rows_cut_off_the_end_are_found_by_a_kept_head(table: str) -> None:
    await filled(table)
    kept = (await reports(table))["host:b"]["head"]
    await execute(f"DELETE FROM {table} WHERE writer = 'host:b' AND n = 4")
    found = await reports(table, str(kept))
    assert found["host:b"]["problem"] is None  # what is left is a whole chain ...
    assert found[""]["intact"] is False and found[""]["head_found"] is False  # ... but shorter


async def test_writes_fail_closed_and_come_back(table: str) -> None:
    trail = await PostgresTrail.open(POSTGRES_URL, table, writer="host:a")
    try:
        await trail.append(record(1), 1)
        await refuse_inserts(table, "could not extend file: No space left on device")
        with pytest.raises(AuditUnavailable, match=r"PostgreSQL.*No space left"):
            await trail.append(record(2), 2)
        await accept_inserts(table)
        await trail.append(record(3), 3)
        assert [r["decision_id"] for r in (await trail.query(DecisionQuery()))[0]] == [
            "id003",
            "id001",
        ]
        assert (await trail.verify())["intact"] is True  # the failed batch left no gap
    finally:
        await trail.close()


async def test_an_answer_whose_commit_fails_is_committed_later(table: str) -> None:
    # Its message went out: the upstream's answer waits and goes in once the
    # database takes writes again.
    trail = await PostgresTrail.open(POSTGRES_URL, table, writer="host:a")
    try:
        await trail.append(record(1), 1)
        await refuse_inserts(table, "could not extend file: No space left on device")
        trail.amend("id001", {"upstream": {"status": 201}})
        await asyncio.sleep(0.2)  # its commit fails
        await accept_inserts(table)
        deadline = asyncio.get_running_loop().time() + 10
        while (await trail.get("id001") or {}).get("upstream") is None:
            assert asyncio.get_running_loop().time() < deadline, "the answer was lost"
            await asyncio.sleep(0.1)
        assert (await trail.verify())["intact"] is True
    finally:
        await trail.close()


async def test_an_unreachable_database_refuses_every_write_in_one_clear_error() -> None:
    trail = await PostgresTrail.open("postgresql://postgres@127.0.0.1:1/test", "t", "host:a")
    try:
        for attempt in (trail.append(record(1), 1), trail.ping(), trail.verify()):
            with pytest.raises(AuditUnavailable, match="audit trail \\(PostgreSQL\\)"):
                await attempt
    finally:
        await trail.close()


async def test_a_database_that_never_answers_is_named_by_its_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It takes the connection (the kernel's backlog does) and says nothing."""
    monkeypatch.setattr(postgres, "TIMEOUT", 0.2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        trail = await PostgresTrail.open(f"postgresql://postgres@127.0.0.1:{port}/test", "t", "w")
        try:
            with pytest.raises(AuditUnavailable) as refused:
                await trail.ping()
        finally:
            await trail.close()
    assert str(refused.value) == "audit trail (PostgreSQL): no answer within 0.2 s"


async def test_an_entry_of_no_readable_record_is_listed_as_damaged(table: str) -> None:
    await filled(table)
    await execute(f"UPDATE {table} SET entry = '{{}}'::bytea WHERE writer = 'host:b' AND n = 2")
    reader = await PostgresTrail.open(POSTGRES_URL, table)
    try:
        listed = {r["decision_id"]: r for r in (await reader.query(DecisionQuery(limit=100)))[0]}
        assert listed["id011"] == {"decision_id": "id011", "damaged": DAMAGED}
        assert listed["id010"]["upstream"] == {"status": 201}
        assert await reader.get("id011") == listed["id011"]
    finally:
        await reader.close()
    problem = (await reports(table))["host:b"]["problem"]
    assert isinstance(problem, dict) and problem["decision_id"] == "id011"


async def test_retention_removes_each_writers_oldest_entries(table: str) -> None:
    await filled(table)  # decisions at 1000 * n ms: host:a 1-3 and 20-22, host:b 10-12
    trail = await PostgresTrail.open(POSTGRES_URL, table)
    try:
        done = await trail.prune(cutoff_ms=15_000)
        assert (done.decisions, done.amendments) == (6, 1)
        listed, _ = await trail.query(DecisionQuery(limit=100))
        assert [r["decision_id"] for r in listed] == ["id022", "id021", "id020"]
        assert listed[-1]["upstream"] == {"status": 201}  # its amendment stays with it
        again = await trail.prune(cutoff_ms=15_000)
        assert (again.decisions, again.amendments) == (0, 0)
    finally:
        await trail.close()
    found = await reports(table)
    assert found[""]["intact"] is True
    assert (found["host:a"]["pruned"], found["host:a"]["entries"]) == (3, 4)
    assert (found["host:b"]["pruned"], found["host:b"]["entries"]) == (3, 1)  # its last stays
    writer = await PostgresTrail.open(POSTGRES_URL, table, writer="host:b")
    await writer.append(record(40), 40_000)  # the chain goes on from its last entry
    await writer.close()
    assert (await reports(table))[""]["intact"] is True


async def test_a_trail_with_a_retention_removes_old_entries_by_itself(table: str) -> None:
    await filled(table)  # every decision is from 1970
    trail = await PostgresTrail.open(POSTGRES_URL, table, writer="host:c", retention_seconds=86400)
    try:
        for _ in range(100):  # it looks at once when it opens
            if not (await trail.query(DecisionQuery()))[0]:
                break
            await asyncio.sleep(0.05)
        assert (await trail.query(DecisionQuery()))[0] == []
        assert (await trail.verify())["intact"] is True
    finally:
        await trail.close()
