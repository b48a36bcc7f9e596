"""Retention on real PostgreSQL: expired transcripts are purged in batches, younger ones and
other spaces are kept, and billing (usage rows, totals, reports) is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.sweeper import purge_once
from store.models import Participant, Segment, Session
from store.records import FinalSegment, SessionRecord, UpsertOutcome, UsageCheckpoint, UsageGroupBy
from store.stores import Store

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAYS = 30


async def _meeting(repo: Store, space: str, ended_days_ago: float, segments: int) -> SessionRecord:
    ended_at = NOW - timedelta(days=ended_days_ago)
    session = await repo.sessions.create_session(
        space_id=space, created_by="u", title="Secret plans", now=ended_at - timedelta(hours=1)
    )
    await repo.sessions.participant_joined(
        session.id, "alice", name="Alice Secret", user_id="alice", now=ended_at - timedelta(hours=1)
    )
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(
                session.id,
                f"u{n}",
                "TR_a",
                f"secret line {n}",
                n * 1000,
                n * 1000 + 900,
                participant_identity="alice",
                language="en",
            )
            for n in range(segments)
        ]
    )
    await repo.usage.open_track_usage(
        session_id=session.id,
        participant_identity="alice",
        track_sid="TR_a",
        model="base",
        cost_per_minute=Decimal("0.01"),
        now=ended_at - timedelta(hours=1),
    )
    await repo.usage.checkpoint_usage(
        [UsageCheckpoint(session.id, "TR_a", audio_seconds=Decimal("125.5"), ended=True)],
        now=ended_at,
    )
    ended = await repo.sessions.end_session(session.id, now=ended_at)
    assert ended is not None
    return ended


async def _billing(repo: Store, space: str) -> tuple[object, ...]:
    report = await repo.usage.usage_report(
        start=NOW - timedelta(days=365),
        end=NOW,
        group_by=UsageGroupBy.SESSION,
        space_id=space,
    )
    return (
        tuple(report.totals),
        tuple(
            (g.session_slug, g.totals.billed_minutes, g.totals.total_cost) for g in report.groups
        ),
    )


async def test_purge_deletes_expired_transcripts_and_keeps_billing(
    repo: Store, db: AsyncSession
) -> None:
    old = await _meeting(repo, "space-a", DAYS + 1, segments=7)
    young = await _meeting(repo, "space-a", DAYS - 1, segments=3)
    other_space = await _meeting(repo, "space-b", DAYS + 100, segments=2)  # no policy: forever
    await repo.retention.set_policy("space-a", DAYS)
    billing_before = await _billing(repo, "space-a")
    usage_before = await repo.usage.session_usage(old.id)

    # small batches: several transactions, each deleting at most 3 segments
    first = await repo.retention.purge_batch(now=NOW, batch_size=3)
    assert (first.segments, first.sessions) == (3, 0)
    total = await purge_once(repo, now=NOW, batch_size=3)
    assert (total.segments, total.sessions) == (4, 1)
    assert (await purge_once(repo, now=NOW, batch_size=3)).empty  # nothing left

    rows = await db.execute(select(Segment.session_id, func.count()).group_by(Segment.session_id))
    counts = {session_id: count for session_id, count in rows}
    assert counts == {young.id: 3, other_space.id: 2}
    purged = (await db.execute(select(Session).where(Session.id == old.id))).scalar_one()
    assert purged.title == "" and purged.transcript_purged_at == NOW
    names = (
        await db.execute(select(Participant.name).where(Participant.session_id == old.id))
    ).scalars()
    assert list(names) == [""]
    kept = await repo.sessions.get_session(young.slug)
    assert kept is not None and kept.title == "Secret plans"

    # billing: the same rows, minutes and cost, in the space report and per session
    assert await _billing(repo, "space-a") == billing_before
    usage_after = await repo.usage.session_usage(old.id)
    assert usage_after.totals == usage_before.totals
    assert [r.total_cost for r in usage_after.rows] == [Decimal("0.030000")]

    # a late replay of a final into the purged session is dropped
    late = FinalSegment(old.id, "u99", "TR_a", "late secret", 0, 1)
    assert await repo.transcripts.upsert_final_segment(late) is UpsertOutcome.SESSION_MISSING


async def test_policy_is_per_space_and_clearable(repo: Store) -> None:
    assert await repo.retention.policy("space-a") is None
    await repo.retention.set_policy("space-a", 7)
    await repo.retention.set_policy("space-b", 90)
    assert (await repo.retention.policy("space-a"), await repo.retention.policy("space-b")) == (
        7,
        90,
    )
    await repo.retention.set_policy("space-a", None)
    assert await repo.retention.policy("space-a") is None
    old = await _meeting(repo, "space-a", 400, segments=1)
    assert (await purge_once(repo, now=NOW)).empty  # forever: nothing purged
    assert await repo.transcripts.count_segments(old.id) == 1
    with pytest.raises(ValueError):
        await repo.retention.set_policy("space-a", 0)


async def test_live_sessions_are_never_purged(repo: Store) -> None:
    live = await repo.sessions.create_session(
        space_id="space-a", created_by="u", now=NOW - timedelta(days=400)
    )
    await repo.transcripts.upsert_final_segment(FinalSegment(live.id, "u", "TR", "hi", 0, 1))
    await repo.retention.set_policy("space-a", 1)
    assert (await purge_once(repo, now=NOW)).empty
    assert await repo.transcripts.count_segments(live.id) == 1
