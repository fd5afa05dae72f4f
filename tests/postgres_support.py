"""What every PostgreSQL test needs: the test database (or a loud skip), and
a table of its own that is dropped afterwards.

PostgreSQL comes from GATEWAY_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test). When it is unreachable the tests
fail under CI=true and are skipped with a loud reason otherwise.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

POSTGRES_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def require_postgres() -> None:
    try:
        db = await asyncpg.connect(POSTGRES_URL, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = (
            f"PostgreSQL at {POSTGRES_URL} is unreachable ({exc}): start it"
            " or point GATEWAY_TEST_POSTGRES_URL at one"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL: {reason}")
        pytest.skip(f"POSTGRES TESTS SKIPPED: {reason}")
    await db.close()


def new_table() -> str:
    return f"gwtest_{uuid.uuid4().hex[:16]}"


async def drop_table(table: str) -> None:
    db = await asyncpg.connect(POSTGRES_URL, timeout=2)
    try:
        # The trail's table, and the one retention keeps its cuts in.
        await db.execute(f"DROP TABLE IF EXISTS {table}, {table}_pruned")
    finally:
        await db.close()


async def execute(statement: str) -> None:
    db = await asyncpg.connect(POSTGRES_URL, timeout=2)
    try:
        await db.execute(statement)
    finally:
        await db.close()


async def refuse_inserts(table: str, error: str) -> None:
    """Make every insert into `table` fail with `error` (as a full disk would)."""
    await execute(
        f"CREATE FUNCTION {table}_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION"
        f" '{error}'; END $$ LANGUAGE plpgsql; CREATE TRIGGER {table}_refuse BEFORE INSERT"
        f" ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_refuse()"
    )


async def accept_inserts(table: str) -> None:
    await execute(f"DROP TRIGGER {table}_refuse ON {table}; DROP FUNCTION {table}_refuse()")
