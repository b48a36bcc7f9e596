"""The storage queries' plans and latency on a database seeded by ``bench.api_seed``.

    python -m bench.api_plans --database-url URL --manifest bench_seed.json [--report plans.json]

The stores' own queries are captured from the engine (so the plans are those of the real SQL),
run under ``EXPLAIN (ANALYZE, BUFFERS)``, and the store methods are timed: usage report of one
space over a month (target p95 < 50 ms), a transcript page, a search, the whole long session
(the SRT export's read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.api_seed import LONG_SESSION_SEGMENTS, Manifest
from store.engine import create_engine, create_sessionmaker
from store.records import SegmentCursor, UsageGroupBy
from store.stores import Store


class _Capture:
    """Records the SQL (and parameters) an engine sends."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[tuple[str, Any]] = []
        self._engine = engine
        event.listen(engine.sync_engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.statements.append((statement, params))

    def close(self) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._on_execute)


async def _explain(engine: AsyncEngine, call: Callable[[], Awaitable[Any]]) -> list[str]:
    capture = _Capture(engine)
    try:
        await call()
    finally:
        capture.close()
    plans = []
    async with engine.connect() as conn:
        for statement, params in capture.statements:
            result = await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params
            )
            plans.append("\n".join(row[0] for row in result))
    return plans


async def _timed(call: Callable[[], Awaitable[Any]], runs: int) -> dict[str, float]:
    for _ in range(min(10, runs)):  # warm the pool and the caches
        await call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "runs": runs,
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
        "max_ms": round(samples[-1], 2),
    }


async def _throughput(
    call: Callable[[], Awaitable[Any]], *, concurrency: int, seconds: float
) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return round(done / (time.perf_counter() - start), 1)


async def explain(database_url: str, manifest: Manifest) -> dict[str, Any]:
    engine = create_engine(database_url, pool_size=16, max_overflow=0)
    repo = Store(create_sessionmaker(engine))
    try:
        long = await repo.sessions.get_session(manifest.long_session_slug)
        typical = await repo.sessions.get_session(manifest.typical_session_slug)
        assert long is not None and typical is not None
        start = datetime.fromisoformat(manifest.report_month_start)
        end = datetime.fromisoformat(manifest.report_month_end)
        space = manifest.report_space_id

        def report(group_by: UsageGroupBy) -> Callable[[], Awaitable[Any]]:
            return lambda: repo.usage.usage_report(
                space_id=space, start=start, end=end, group_by=group_by
            )

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "usage_report_space_month_by_day": report(UsageGroupBy.DAY),
            "usage_report_space_month_by_participant": report(UsageGroupBy.PARTICIPANT),
            "usage_report_space_month_by_user": report(UsageGroupBy.USER),
            "usage_report_user_month_by_day": lambda: repo.usage.usage_report(
                user_id="user-1", start=start, end=end, group_by=UsageGroupBy.DAY
            ),
            "transcript_page_100": lambda: repo.transcripts.transcript_page(typical.id, limit=100),
            "transcript_page_100_long_session_middle": lambda: repo.transcripts.transcript_page(
                long.id, limit=100, after=SegmentCursor(LONG_SESSION_SEGMENTS * 1500, 0)
            ),
            "transcript_search_long_session": lambda: repo.transcripts.transcript_page(
                long.id, q="бюджет", limit=100
            ),
            "transcript_search_count_long_session": lambda: repo.transcripts.count_segments(
                long.id, q="budget"
            ),
            "srt_read_long_session": lambda: _drain(repo, long.id),
            "session_usage": lambda: repo.usage.session_usage(typical.id),
            "list_sessions_with_jobs": lambda: repo.sessions.list_sessions_with_jobs(
                space_id=space, limit=50
            ),
        }
        results: dict[str, Any] = {}
        for name, call in calls.items():
            runs = 20 if name.startswith("srt") else 200
            results[name] = {
                "timing": await _timed(call, runs),
                "plans": await _explain(engine, call) if not name.startswith("srt") else [],
            }
        results["transcript_page_100"]["repository_rps_16_concurrent"] = await _throughput(
            calls["transcript_page_100"], concurrency=16, seconds=5
        )
        return results
    finally:
        await engine.dispose()


async def _drain(repo: Store, session_id: int) -> int:
    return sum([1 async for _ in repo.transcripts.iter_segments(session_id)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_plans", description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--manifest", type=Path, required=True, help="written by bench.api_seed")
    parser.add_argument("--report", type=Path, help="write the plans and timings (JSON)")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required")
    manifest = Manifest(**json.loads(args.manifest.read_text()))
    results = asyncio.run(explain(args.database_url, manifest))
    if args.report is not None:
        args.report.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    for name, item in results.items():
        extra = {k: v for k, v in item.items() if k not in ("timing", "plans")}
        print(f"{name}: {item['timing']} {extra or ''}")
        for plan_text in item["plans"]:
            print("    " + plan_text.replace("\n", "\n    "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
