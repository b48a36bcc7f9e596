"""Search is served by the GIN index: the plans of a seeded table (bench.search's seeder).

A plan, not a timing: the table is seeded with enough rows that a sequential scan would cost the
planner more than the index, ANALYZEd, and the planner left at its defaults (no
``enable_seqscan = off``). The timings are bench/search.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.search import seed
from store.engine import create_engine
from store.models import Segment
from store.transcripts import _search_condition, search_statement
from tests.support.db import TestServer, create_database, drop_database, unique_database_name

SEGMENTS = 40_000


@pytest.fixture(scope="module")
def seeded_url(db_server: TestServer) -> Iterator[str]:
    """One database seeded for the module (the seeding takes a few seconds)."""
    name = unique_database_name()

    async def _create() -> str:
        url = await create_database(db_server.admin_url, name)
        await seed(url, segments=SEGMENTS, sessions=400, spaces=20)
        return url

    url = asyncio.run(_create())
    try:
        yield url
    finally:
        asyncio.run(drop_database(db_server.admin_url, name))


@pytest.fixture
async def seeded(seeded_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(seeded_url, pool=False)
    try:
        yield engine
    finally:
        await engine.dispose()


def _sql(stmt: object) -> str:
    compiled = stmt.compile(  # type: ignore[attr-defined]
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


async def _plan(engine: AsyncEngine, sql: str) -> str:
    async with engine.connect() as conn:
        rows = await conn.execute(text("EXPLAIN " + sql.replace(":", "\\:")))
        return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("q", ["kubernetes", "zyxwvut", "бюджета", '"budget review"'])
async def test_space_search_plan_uses_the_gin_index(seeded: AsyncEngine, q: str) -> None:
    stmt = search_statement("space-0001", q, limit=21)
    plan = await _plan(seeded, _sql(stmt))
    assert "ix_segments_search_vector" in plan, plan
    assert "Seq Scan on segments" not in plan, plan


async def test_session_search_plan_uses_an_index(seeded: AsyncEngine) -> None:
    """The per-session search (transcript page with q): no full scan of segments either."""
    condition = _search_condition("zyxwvut")
    assert condition is not None
    async with seeded.connect() as conn:
        session_id = (await conn.execute(text("SELECT min(session_id) FROM segments"))).scalar()
    stmt = (
        select(Segment.id)
        .where(Segment.session_id == session_id, condition)
        .order_by(Segment.start_ms, Segment.id)
        .limit(101)
    )
    plan = await _plan(seeded, _sql(stmt))
    assert "Seq Scan on segments" not in plan, plan
    assert "ix_segments_search_vector" in plan or "ix_segments_session_id_start_ms" in plan, plan
