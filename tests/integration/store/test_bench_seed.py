"""The benchmark seeder keeps working as the schema evolves (tiny scale)."""

from __future__ import annotations

from datetime import datetime

from bench.api_seed import LONG_SESSION_SEGMENTS, Plan, seed
from store.engine import create_engine, create_sessionmaker
from store.records import UsageGroupBy
from store.stores import Store


async def test_seed_tiny(empty_database_url: str) -> None:
    plan = Plan(spaces=3, sessions=6, segments=LONG_SESSION_SEGMENTS + 50, usage=30)
    manifest = await seed(empty_database_url, plan, reset=False)
    assert (manifest.segments, manifest.usage_rows, manifest.participants) == (2450, 30, 24)
    engine = create_engine(empty_database_url, pool=False)
    try:
        repo = Store(create_sessionmaker(engine))
        long = await repo.sessions.get_session(manifest.long_session_slug)
        assert long is not None
        assert await repo.transcripts.count_segments(long.id) == LONG_SESSION_SEGMENTS
        page = await repo.transcripts.transcript_page(long.id, limit=5, include_words=True)
        assert page.items[0].words and page.items[0].participant_identity == "p0"
        report = await repo.usage.usage_report(
            space_id=manifest.report_space_id,
            start=datetime.fromisoformat(manifest.report_month_start),
            end=datetime.fromisoformat(manifest.report_month_end),
            group_by=UsageGroupBy.DAY,
        )
        assert report.totals and report.totals[0].tracks >= 1
        # identities continue after the copied ids
        created = await repo.sessions.create_session(space_id="space-0000", created_by="u")
        assert created.id == plan.sessions + 1
    finally:
        await engine.dispose()
