"""Seed a database for the API benchmark (its queries' plans and timings: ``bench.api_plans``).

    python -m bench.api_seed --database-url URL [--manifest bench_seed.json]

Default scale (issue 5): 1 000 spaces, 20 000 sessions, 1 000 000 final segments (one of the
sessions is a 2-hour meeting of 2 400 segments, for the SRT export), 80 000 participants,
100 000 usage rows (per participant track), spread over six months. Rows are written with
``COPY`` (asyncpg ``copy_records_to_table``); the database is migrated to head first and must be
empty (``--reset`` truncates it). The manifest (JSON) names what the load benchmark should hit:
the busiest space and its busiest month, a typical session, the long session.

``python -m bench.api_plans`` then shows the storage queries' plans and timings on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg  # type: ignore[import-untyped]

from store.engine import asyncpg_dsn, redact_url
from store.migrate import upgrade_url

EPOCH = datetime(2026, 5, 1, tzinfo=UTC)
PERIOD_DAYS = 180
PARTICIPANTS_PER_SESSION = 4
LONG_SESSION_ID = 1
LONG_SESSION_SEGMENTS = 2400  # 2 hours, one final every 3 s
COPY_CHUNK = 100_000
PRICE = Decimal("0.010000")

EN = str.split(
    "the meeting budget plan release customer feedback design review deploy staging "
    "production metrics latency transcript caption speaker model quality schedule team "
    "roadmap sprint ticket priority decision action item follow up tomorrow monday "
    "agreement contract invoice payment support question answer issue problem solution"
)
RU = str.split(
    "встреча бюджет план релиз клиент отзыв дизайн обзор выкладка метрики задержка "
    "расшифровка субтитры спикер модель качество расписание команда спринт задача "
    "приоритет решение действие завтра понедельник договор счёт оплата поддержка вопрос "
    "ответ проблема решение обсудили предлагаю согласен давайте успеем проверим"
)


@dataclass
class Plan:
    spaces: int = 1000
    sessions: int = 20_000
    segments: int = 1_000_000
    usage: int = 100_000
    seed: int = 5


@dataclass
class Manifest:
    database: str  # redacted URL
    spaces: int
    sessions: int
    segments: int
    usage_rows: int
    participants: int
    long_session_slug: str
    long_session_segments: int
    typical_session_slug: str
    report_space_id: str
    report_month_start: str
    report_month_end: str
    sample_session_slugs: list[str] = field(default_factory=list)
    sample_space_ids: list[str] = field(default_factory=list)
    seed_seconds: float = 0.0


def _space(i: int) -> str:
    return f"space-{i:04d}"


def _slug(session_id: int) -> str:
    return f"bench-{session_id:07d}"


def _text(rng: random.Random) -> str:
    vocab = RU if rng.random() < 0.5 else EN
    words = rng.choices(vocab, k=rng.randint(5, 22))
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice(".?!")


class SessionRow(NamedTuple):
    id: int
    slug: str
    title: str
    space_id: str
    created_by: str
    status: str
    language: str | None
    created_at: datetime
    started_at: datetime
    ended_at: datetime
    last_activity_at: datetime


def _session_rows(plan: Plan, rng: random.Random) -> list[SessionRow]:
    rows = []
    for sid in range(1, plan.sessions + 1):
        created = EPOCH + timedelta(seconds=rng.randrange(PERIOD_DAYS * 86400))
        started = created + timedelta(minutes=1)
        ended = started + timedelta(minutes=rng.randint(10, 90))
        if sid == LONG_SESSION_ID:
            ended = started + timedelta(hours=2)
        space = _space((sid - 1) % plan.spaces)
        title = f"Meeting {sid}"
        rows.append(
            SessionRow(
                sid,
                _slug(sid),
                title,
                space,
                "owner",
                "ENDED",
                None,
                created,
                started,
                ended,
                ended,
            )
        )
    return rows


SESSION_COLUMNS = list(SessionRow._fields)


def _space_no(space_id: str) -> int:
    return int(space_id.rsplit("-", 1)[1])


def _user(session: SessionRow, k: int) -> str | None:
    """Participants 0-2 are registered users (ten per space), participant 3 is a guest."""
    return f"user-{_space_no(session.space_id) * 10 + (session.id + k) % 10}" if k < 3 else None


def _participant_id(session_id: int, k: int) -> int:
    return (session_id - 1) * PARTICIPANTS_PER_SESSION + k + 1


def _participant_rows(sessions: Sequence[SessionRow]) -> list[tuple[Any, ...]]:
    rows = []
    for s in sessions:
        for k in range(PARTICIPANTS_PER_SESSION):
            role = "HOST" if k == 0 else "GUEST"
            pid = _participant_id(s.id, k)
            rows.append((pid, s.id, f"p{k}", f"Person {k}", _user(s, k), role, s.started_at, None))
    return rows


PARTICIPANT_COLUMNS = [
    "id",
    "session_id",
    "identity",
    "name",
    "user_id",
    "role",
    "joined_at",
    "left_at",
]


def _segment_counts(plan: Plan, rng: random.Random) -> list[int]:
    rest = plan.segments - LONG_SESSION_SEGMENTS
    others = plan.sessions - 1
    base, extra = divmod(rest, others)
    counts = [base + (1 if i < extra else 0) for i in range(others)]
    # jitter while keeping the total: move up to half the base between random pairs
    for _ in range(others):
        a, b = rng.randrange(others), rng.randrange(others)
        shift = rng.randint(0, counts[a] // 2)
        counts[a] -= shift
        counts[b] += shift
    return [LONG_SESSION_SEGMENTS, *counts]


def _segment_rows(
    plan: Plan, sessions: Sequence[SessionRow], rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    seg_id = 0
    for s, count in zip(sessions, _segment_counts(plan, rng), strict=True):
        sid, started = s.id, s.started_at
        for n in range(count):
            seg_id += 1
            k = n % PARTICIPANTS_PER_SESSION
            start_ms = n * 3000 + rng.randrange(500)
            end_ms = start_ms + rng.randint(800, 2900)
            words = None
            if sid == LONG_SESSION_ID:
                words = json.dumps(
                    [
                        {
                            "word": w,
                            "start_ms": start_ms + i * 200,
                            "end_ms": start_ms + i * 200 + 180,
                        }
                        for i, w in enumerate(_text(rng).split()[:10])
                    ]
                )
            yield (
                seg_id,
                sid,
                _participant_id(sid, k),
                f"TR_{sid}_{k}-{n}",
                f"TR_{sid}_{k}",
                f"Person {k}",
                _text(rng),
                None,
                start_ms,
                end_ms,
                started + timedelta(milliseconds=start_ms),
                started + timedelta(milliseconds=end_ms),
                words,
                round(rng.uniform(0.6, 1.0), 3),
                "whisper-base",
                started,
                started,
            )


SEGMENT_COLUMNS = [
    "id",
    "session_id",
    "participant_id",
    "utterance_id",
    "track_sid",
    "speaker_label",
    "text",
    "language",
    "start_ms",
    "end_ms",
    "started_at",
    "ended_at",
    "words",
    "confidence",
    "model",
    "created_at",
    "updated_at",
]


def _usage_rows(
    plan: Plan, sessions: Sequence[SessionRow], rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    per_session, extra = divmod(plan.usage, plan.sessions)
    usage_id = 0
    for index, s in enumerate(sessions):
        sid, started = s.id, s.started_at
        for j in range(per_session + (1 if index < extra else 0)):
            usage_id += 1
            k = j % PARTICIPANTS_PER_SESSION
            audio = Decimal(rng.randrange(0, 3_600_000)) / 1000
            speech = (audio * Decimal("0.6")).quantize(Decimal("0.001"))
            yield (
                usage_id,
                sid,
                _participant_id(sid, k),
                s.space_id,
                _user(s, k),
                f"TR_{sid}_{k}" + (f"_{j}" if j >= PARTICIPANTS_PER_SESSION else ""),
                "whisper-base",
                audio,
                speech,
                rng.randint(0, 2000),
                rng.randint(0, 400),
                rng.randint(0, 3),
                PRICE,
                "USD",
                started,
                started + timedelta(seconds=float(audio)),
                started + timedelta(seconds=float(audio)),
            )


USAGE_COLUMNS = [
    "id",
    "session_id",
    "participant_id",
    "space_id",
    "user_id",
    "track_sid",
    "model",
    "audio_seconds",
    "speech_seconds",
    "partial_count",
    "final_count",
    "error_count",
    "cost_per_minute",
    "currency",
    "started_at",
    "ended_at",
    "updated_at",
]


async def _copy(
    conn: asyncpg.Connection, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]
) -> int:
    total = 0
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= COPY_CHUNK:
            await conn.copy_records_to_table(table, records=chunk, columns=columns)
            total += len(chunk)
            chunk = []
    if chunk:
        await conn.copy_records_to_table(table, records=chunk, columns=columns)
        total += len(chunk)
    return total


async def seed(database_url: str, plan: Plan, *, reset: bool) -> Manifest:
    t0 = time.perf_counter()
    await upgrade_url(database_url)
    rng = random.Random(plan.seed)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        if await conn.fetchval("SELECT count(*) FROM sessions") and not reset:
            raise SystemExit("the database is not empty; pass --reset to truncate it")
        await conn.execute(
            "TRUNCATE segments, track_usage, participants, transcription_jobs, space_quotas,"
            " sessions RESTART IDENTITY CASCADE"
        )
        sessions = _session_rows(plan, rng)
        participants = _participant_rows(sessions)
        await _copy(conn, "sessions", SESSION_COLUMNS, iter(sessions))
        await _copy(conn, "participants", PARTICIPANT_COLUMNS, iter(participants))
        jobs = (
            (s.id, "STOPPED", 1, s.created_at, s.started_at, s.ended_at, "finished")
            for s in sessions
        )
        job_columns = ["session_id", "status", "attempts", "requested_at", "claimed_at"]
        job_columns += ["stopped_at", "stop_reason"]
        await _copy(conn, "transcription_jobs", job_columns, jobs)
        print("seeding segments ...", file=sys.stderr)
        segments = await _copy(
            conn, "segments", SEGMENT_COLUMNS, _segment_rows(plan, sessions, rng)
        )
        usage = await _copy(conn, "track_usage", USAGE_COLUMNS, _usage_rows(plan, sessions, rng))
        for table in ("sessions", "participants", "segments", "track_usage"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        print("vacuum analyze ...", file=sys.stderr)
        await conn.execute("VACUUM ANALYZE")
        busiest = await conn.fetchrow(
            "SELECT space_id, date_trunc('month', started_at, 'UTC') AS month, count(*) AS n"
            " FROM track_usage GROUP BY 1, 2 ORDER BY n DESC, 1 LIMIT 1"
        )
        # a session with the average number of segments (the long one aside)
        average = (segments - LONG_SESSION_SEGMENTS) / (plan.sessions - 1)
        typical = await conn.fetchval(
            "SELECT s.slug FROM sessions s JOIN (SELECT session_id, count(*) AS n FROM segments"
            " WHERE session_id <> $1 GROUP BY session_id) c ON c.session_id = s.id"
            " ORDER BY abs(c.n - $2), s.id LIMIT 1",
            LONG_SESSION_ID,
            average,
        )
    finally:
        await conn.close()
    month_start: datetime = busiest["month"]
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    sample = rng.sample(range(2, plan.sessions + 1), k=min(100, plan.sessions - 1))
    return Manifest(
        database=redact_url(database_url),
        spaces=plan.spaces,
        sessions=plan.sessions,
        segments=segments,
        usage_rows=usage,
        participants=len(participants),
        long_session_slug=_slug(LONG_SESSION_ID),
        long_session_segments=LONG_SESSION_SEGMENTS,
        typical_session_slug=typical,
        report_space_id=busiest["space_id"],
        report_month_start=month_start.isoformat(),
        report_month_end=month_end.isoformat(),
        sample_session_slugs=[_slug(s) for s in sample],
        sample_space_ids=[
            _space(i) for i in rng.sample(range(plan.spaces), k=min(20, plan.spaces))
        ],
        seed_seconds=round(time.perf_counter() - t0, 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_seed", description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--spaces", type=int, default=Plan.spaces)
    parser.add_argument("--sessions", type=int, default=Plan.sessions)
    parser.add_argument("--segments", type=int, default=Plan.segments)
    parser.add_argument("--usage", type=int, default=Plan.usage)
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--reset", action="store_true", help="truncate a non-empty database")
    parser.add_argument("--manifest", type=Path, help="write the manifest here (JSON)")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required")
    plan = Plan(args.spaces, args.sessions, args.segments, args.usage, args.seed)
    if plan.segments < LONG_SESSION_SEGMENTS + plan.sessions or plan.sessions < 2:
        parser.error("need at least 2 sessions and one segment per session beyond the long one")
    manifest = asyncio.run(seed(args.database_url, plan, reset=args.reset))
    if args.manifest is not None:
        args.manifest.write_text(json.dumps(asdict(manifest), indent=2))
    summary = asdict(manifest)
    summary.pop("sample_session_slugs")
    summary.pop("sample_space_ids")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
