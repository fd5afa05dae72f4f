"""The PostgreSQL the benchmark's shared-trail row writes to: found, or the
row skipped; a table of the run's own, dropped at the end."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg

URL = os.environ.get("GATEWAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None: it can)."""

    async def probe() -> None:
        db = await asyncpg.connect(URL, timeout=2)
        await db.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{URL} is unreachable ({exc})"
    return None


def new_table() -> str:
    return f"bench_trail_{uuid.uuid4().hex[:12]}"


def drop(table: str) -> None:
    async def run() -> None:
        db = await asyncpg.connect(URL, timeout=2)
        try:
            await db.execute(f"DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {table}_pruned")
        finally:
            await db.close()

    asyncio.run(run())
