"""Search benchmark: full-text search on a million segments, single and 40 concurrent.

    .venv/bin/python -m bench.search [--database-url URL] [--segments 1000000] [--reuse]

1. Creates a fresh database ``transcriber_bench_search`` on ``DATABASE_URL``'s server (default:
   the local PostgreSQL at 127.0.0.1:5432), migrates it and seeds it in SQL
   (``generate_series``): 100 spaces, 10 000 ended sessions (a third English, a third Russian, a
   third without a language, whose segments are tagged with a detected language), and
   ``--segments`` segments of 6-20 words drawn from meeting vocabularies, with a few rare words
   (one segment in ~2 000 says "kubernetes" or "квартальный"). ``--reuse`` keeps a seeded one.
2. Times the storage queries the API runs (``TranscriptStore.search_space`` for one space, and
   ``transcript_page(q=)`` for one session): a common word, a rare word, a phrase, and words
   that match nothing, each ``--repeat`` times alone (p50/p95), then 40 at once (p50/p95 and the
   wall time of the burst).

Writes ``bench/results/search.json``. Quote the figures with ``/proc/loadavg`` (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from bench.api import recreate_database
from store.engine import asyncpg_dsn, create_engine, create_sessionmaker
from store.migrate import upgrade_url
from store.stores import Store

DB_NAME = "transcriber_bench_search"
RESULTS = Path(__file__).resolve().parent / "results" / "search.json"
CONCURRENCY = 40

EN = str.split(
    "the meeting budget plan release customer feedback design review deploy staging "
    "production metrics latency transcript caption speaker model quality schedule team "
    "roadmap sprint ticket priority decision action item follow up tomorrow monday "
    "agreement contract invoice payment support question answer issue problem solution "
    "we should check numbers before friday and then send them to marketing"
)
RU = str.split(
    "встреча бюджет план релиз клиент отзыв дизайн обзор выкладка метрики задержка "
    "расшифровка субтитры спикер модель качество расписание команда спринт задача "
    "приоритет решение действие завтра понедельник договор счёт оплата поддержка вопрос "
    "ответ проблема решение обсудили предлагаю согласен давайте успеем проверим цифры"
)
RARE = {"en": "kubernetes", "ru": "квартальный"}

# per space: sessions i with i % spaces == space; session i holds segments g with
# g / (segments / sessions) == i, stored contiguously as a meeting's finals are
SESSIONS_SQL = """
INSERT INTO sessions (slug, title, space_id, created_by, status, language, created_at,
                      started_at, ended_at, last_activity_at)
SELECT 'bench' || lpad(i::text, 8, '0'), 'Bench meeting ' || i,
       'space-' || lpad((i % $2)::text, 4, '0'), 'bench', 'ENDED',
       (ARRAY['en', 'ru', NULL])[1 + i % 3],
       now() - make_interval(days => 30 + i % 200), now() - make_interval(days => 30 + i % 200),
       now() - make_interval(days => 30 + i % 200) + interval '1 hour',
       now() - make_interval(days => 30 + i % 200) + interval '1 hour'
FROM generate_series(0, $1 - 1) AS i
"""

SEGMENTS_SQL = """
WITH first AS (SELECT min(id) AS id FROM sessions WHERE slug LIKE 'bench%'),
words AS (SELECT $3::text[] AS en, $4::text[] AS ru)
INSERT INTO segments (session_id, utterance_id, track_sid, text, language, search_config,
                      start_ms, end_ms, model)
SELECT first.id + g / ($1 / $2), 'u' || g, 'TR_' || (g % 4), t.text, t.lang,
       CASE coalesce(s_lang.language, t.lang) WHEN 'en' THEN 'english' WHEN 'ru' THEN 'russian'
            ELSE 'simple' END::regconfig,
       (g % ($1 / $2)) * 3000, (g % ($1 / $2)) * 3000 + 2500, 'bench'
FROM generate_series(0, $1 - 1) AS g
CROSS JOIN first CROSS JOIN words
CROSS JOIN LATERAL (
    SELECT (ARRAY['en', 'ru', NULL])[1 + (g / ($1 / $2)) % 3] AS language
) AS s_lang
CROSS JOIN LATERAL (
    SELECT CASE WHEN s_lang.language = 'ru' OR (s_lang.language IS NULL AND g % 2 = 0)
                THEN 'ru' ELSE 'en' END AS lang
) AS l
CROSS JOIN LATERAL (
    SELECT l.lang,
           (SELECT string_agg(
                       CASE WHEN l.lang = 'ru' AND w.n > 0  -- (w.n: aggregate over w)
                            THEN words.ru[1 + floor(random() * cardinality(words.ru))::int]
                            ELSE words.en[1 + floor(random() * cardinality(words.en))::int]
                       END, ' ')
            FROM generate_series(1, 6 + (g * 7) % 15) AS w(n))
           || CASE WHEN g % 1999 = 0 THEN ' ' || CASE l.lang WHEN 'ru' THEN $5 ELSE $6 END
                   ELSE '' END AS text
) AS t
"""

QUERIES = {
    "common": "budget",
    "common_ru": "бюджета",
    "rare": "kubernetes",
    "phrase": '"budget review"',
    "no_match": "zyxwvut",
    "no_match_ru": "несуществующее",
}


async def seed(database_url: str, *, segments: int, sessions: int, spaces: int) -> None:
    """Migrate ``database_url`` (empty) to head and fill it in SQL; the GIN index is rebuilt
    after the bulk insert (one build is much cheaper than a million index insertions)."""
    await upgrade_url(database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute("DROP INDEX ix_segments_search_vector")
        await conn.execute(SESSIONS_SQL, sessions, spaces)
        await conn.execute(SEGMENTS_SQL, segments, sessions, EN, RU, RARE["ru"], RARE["en"])
        await conn.execute(
            "CREATE INDEX ix_segments_search_vector ON segments USING gin (search_vector)"
        )
        await conn.execute("VACUUM ANALYZE sessions")
        await conn.execute("VACUUM ANALYZE segments")
    finally:
        await conn.close()


def _stats(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def measure(database_url: str, *, repeat: int) -> dict[str, Any]:
    engine = create_engine(database_url, pool_size=CONCURRENCY, max_overflow=0)
    repo = Store(create_sessionmaker(engine))
    results: dict[str, Any] = {}
    try:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            session_id = await conn.fetchval(
                "SELECT id FROM sessions WHERE space_id = 'space-0001' ORDER BY id LIMIT 1"
            )
            total = await conn.fetchval("SELECT count(*) FROM segments")
        finally:
            await conn.close()
        results["segments"] = total
        for name, q in QUERIES.items():
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "space": lambda q=q: repo.transcripts.search_space("space-0001", q, limit=20),
                "session": lambda q=q: repo.transcripts.transcript_page(session_id, q=q, limit=100),
            }
            for scope, call in calls.items():
                await call()  # warm
                single = [await _timed(call) for _ in range(repeat)]
                burst_start = time.perf_counter()
                burst = await asyncio.gather(*(_timed(call) for _ in range(CONCURRENCY)))
                wall = (time.perf_counter() - burst_start) * 1000
                results[f"{scope}:{name}"] = {
                    "q": q,
                    "single": _stats(single),
                    f"concurrent_{CONCURRENCY}": _stats(list(burst)) | {"wall_ms": round(wall, 1)},
                }
    finally:
        await engine.dispose()
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server_url = args.database_url or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    database_url = make_url(server_url).set(database=DB_NAME).render_as_string(False)
    seed_seconds = None
    if not args.reuse:
        database_url = await recreate_database(server_url, DB_NAME)
        print(f"seeding {args.segments} segments ...", file=sys.stderr)
        start = time.perf_counter()
        await seed(database_url, segments=args.segments, sessions=10_000, spaces=100)
        seed_seconds = round(time.perf_counter() - start, 1)
    results = await measure(database_url, repeat=args.repeat)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().strip()  # noqa: ASYNC240
    results["seed_seconds"] = seed_seconds
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database")
    args = parser.parse_args(argv)
    with open("/proc/loadavg") as f:
        print(f"loadavg before: {f.read().strip()}", file=sys.stderr)
    results = asyncio.run(run(args))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    for name, item in results.items():
        print(f"{name}: {item}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
