"""Usage and cost: billing arithmetic (Decimal, per track), checkpoints, reports."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from store.models import TrackUsage
from store.money import billed_minutes, quantize_seconds, track_cost
from store.records import UsageCheckpoint, UsageGroupBy
from store.stores import Store

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
PRICE = Decimal("0.01")


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [
        (Decimal(0), 0),
        (Decimal("0.001"), 1),
        (Decimal("59.999"), 1),
        (Decimal(60), 1),
        (Decimal("60.001"), 2),
        (Decimal("60.0004"), 1),  # below the stored millisecond resolution
        (Decimal("60.0005"), 2),  # rounds half up to 60.001
        (Decimal(3600), 60),
        (Decimal("7200.5"), 121),
    ],
)
def test_billed_minutes(seconds: Decimal, minutes: int) -> None:
    assert billed_minutes(seconds) == minutes
    assert track_cost(seconds, PRICE) == minutes * PRICE
    assert isinstance(track_cost(seconds, PRICE), Decimal)


@given(st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False))
def test_billed_minutes_is_the_smallest_covering_whole_minute(seconds: Decimal) -> None:
    minutes = billed_minutes(seconds)
    assert (minutes - 1) * 60 < seconds <= minutes * 60 or (seconds == 0 and minutes == 0)
    assert track_cost(seconds, Decimal("0.01")) == Decimal("0.01") * minutes


def test_money_rejects_negative() -> None:
    with pytest.raises(ValueError):
        billed_minutes(Decimal(-1))
    with pytest.raises(ValueError):
        track_cost(Decimal(1), Decimal("-0.01"))


async def test_generated_columns_match_python(db: AsyncSession) -> None:
    """PostgreSQL's generated billed_minutes/total_cost agree with store.money, exactly."""
    rng = random.Random(5)
    edge = ["0", "0.001", "59.999", "60", "60.001", "119.999", "120", "120.001", "86400"]
    values = [Decimal(v) for v in edge]
    values += [Decimal(rng.randrange(0, 10**9)) / 1000 for _ in range(300)]
    prices = [Decimal("0.01"), Decimal("0.004500"), Decimal("1.234567"), Decimal(0)]
    rows = [
        {
            "space_id": "sp",
            "track_sid": f"TR_{i}",
            "audio_seconds": quantize_seconds(v),
            "cost_per_minute": prices[i % len(prices)],
            "started_at": T0,
        }
        for i, v in enumerate(values)
    ]
    await db.execute(insert(TrackUsage), rows)
    stored = (
        await db.execute(
            select(
                TrackUsage.audio_seconds,
                TrackUsage.cost_per_minute,
                TrackUsage.billed_minutes,
                TrackUsage.total_cost,
            )
        )
    ).all()
    await db.rollback()
    assert len(stored) == len(values)
    for seconds, price, minutes, total in stored:
        assert isinstance(total, Decimal)
        assert minutes == billed_minutes(seconds)
        assert total == track_cost(seconds, price)


async def _live(repo: Store, space: str = "sp", *, at: datetime = T0) -> int:
    s = await repo.sessions.create_session(space_id=space, created_by="owner", now=at)
    await repo.sessions.participant_joined(s.id, "alice", name="Alice", user_id="user-a", now=at)
    await repo.sessions.participant_joined(s.id, "bob", name="Bob", now=at)
    return s.id


async def _track(
    repo: Store, sid: int, who: str, track: str, seconds: str, *, at: datetime = T0
) -> None:
    await repo.usage.open_track_usage(
        session_id=sid,
        participant_identity=who,
        track_sid=track,
        model="whisper-base",
        cost_per_minute=PRICE,
        now=at,
    )
    await repo.usage.checkpoint_usage(
        [UsageCheckpoint(sid, track, Decimal(seconds), Decimal(seconds) / 2, 5, 2, 0, True)],
        now=at,
    )


async def test_checkpoints_add_increments_and_close(repo: Store) -> None:
    sid = await _live(repo)
    await repo.usage.open_track_usage(
        session_id=sid,
        participant_identity="alice",
        track_sid="TR_a",
        model="whisper-base",
        cost_per_minute=PRICE,
        now=T0,
    )
    cp = UsageCheckpoint(sid, "TR_a", Decimal("30.0004"), Decimal("12.5"), 10, 2, 1)
    assert await repo.usage.checkpoint_usage([cp, cp], now=T0 + timedelta(seconds=30)) == 2
    missing = UsageCheckpoint(sid, "TR_missing", Decimal(1))
    assert await repo.usage.checkpoint_usage([missing]) == 0
    (row,) = (await repo.usage.session_usage(sid)).rows
    assert row.audio_seconds == Decimal("60.000") and row.speech_seconds == Decimal("25.000")
    assert (row.partial_count, row.final_count, row.error_count) == (20, 4, 2)
    assert row.billed_minutes == 1 and row.total_cost == Decimal("0.01")
    assert row.ended_at is None and row.user_id == "user-a"

    # one more millisecond: a second billed minute
    await repo.usage.checkpoint_usage([UsageCheckpoint(sid, "TR_a", Decimal("0.001"))])
    assert await repo.usage.close_track_usage(sid, "TR_a", now=T0 + timedelta(minutes=2))
    (row,) = (await repo.usage.session_usage(sid)).rows
    assert row.billed_minutes == 2 and row.total_cost == Decimal("0.02")
    assert row.ended_at == T0 + timedelta(minutes=2)

    # a worker taking the session over re-opens the track: same row, counters continue
    reopened = await repo.usage.open_track_usage(
        session_id=sid,
        participant_identity="alice",
        track_sid="TR_a",
        model="whisper-base",
        cost_per_minute=Decimal("9.99"),
    )
    assert reopened.id == row.id and reopened.ended_at is None
    assert reopened.audio_seconds == Decimal("60.001") and reopened.cost_per_minute == PRICE

    with pytest.raises(ValueError):
        await repo.usage.checkpoint_usage([UsageCheckpoint(sid, "TR_a", Decimal(-1))])


async def test_session_totals_sum_per_track_billed_minutes(repo: Store) -> None:
    sid = await _live(repo)
    await _track(repo, sid, "alice", "TR_a", "30")  # 1 minute
    await _track(repo, sid, "bob", "TR_b", "30")  # 1 minute, not half of one shared minute
    await _track(repo, sid, "bob", "TR_b2", "0")  # opened, nothing transcribed: 0
    usage = await repo.usage.session_usage(sid)
    assert [r.track_sid for r in usage.rows] == ["TR_a", "TR_b", "TR_b2"]
    (totals,) = usage.totals
    assert totals.tracks == 3 and totals.audio_seconds == Decimal("60.000")
    assert totals.billed_minutes == 2  # ceil per track, summed; ceil(60 s total) would be 1
    assert totals.total_cost == Decimal("0.02") and totals.currency == "USD"
    assert (await repo.usage.session_usage(10**9)).totals == []


async def test_usage_report_groupings_and_range(repo: Store) -> None:
    day1 = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)
    day2 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    s1 = await _live(repo, at=day1)
    await _track(repo, s1, "alice", "TR_1a", "61", at=day1)  # 2 min
    await _track(repo, s1, "bob", "TR_1b", "10", at=day1)  # 1 min
    s2 = await _live(repo, at=day2)
    await _track(repo, s2, "alice", "TR_2a", "120", at=day2)  # 2 min
    s3 = await _live(repo, "other-space", at=day2)
    await _track(repo, s3, "alice", "TR_3a", "600", at=day2)  # 10 min, other space
    outside = await _live(repo, at=datetime(2026, 12, 1, tzinfo=UTC))
    await _track(repo, outside, "alice", "TR_x", "60", at=datetime(2026, 12, 1, tzinfo=UTC))

    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)

    by_day = await repo.usage.usage_report(
        group_by=UsageGroupBy.DAY, space_id="sp", start=start, end=end
    )
    assert [(g.day, g.totals.billed_minutes) for g in by_day.groups] == [
        (date(2026, 11, 2), 3),
        (date(2026, 11, 3), 2),
    ]
    (totals,) = by_day.totals
    assert totals.billed_minutes == 5 and totals.total_cost == Decimal("0.05")
    assert totals.tracks == 3

    # the same rows by day in Moscow time: 23:30 UTC is already the 3rd there
    msk = await repo.usage.usage_report(
        group_by=UsageGroupBy.DAY, space_id="sp", tz="Europe/Moscow", start=start, end=end
    )
    assert [(g.day, g.totals.billed_minutes) for g in msk.groups] == [(date(2026, 11, 3), 5)]

    by_user = await repo.usage.usage_report(
        group_by=UsageGroupBy.USER, space_id="sp", start=start, end=end
    )
    assert [(g.user_id, g.totals.billed_minutes) for g in by_user.groups] == [
        ("user-a", 4),
        (None, 1),
    ]

    by_participant = await repo.usage.usage_report(
        group_by=UsageGroupBy.PARTICIPANT, session_id=s1, start=start, end=end
    )
    assert [
        (g.participant_identity, g.participant_name, g.session_id, g.totals.total_cost)
        for g in by_participant.groups
    ] == [("alice", "Alice", s1, Decimal("0.02")), ("bob", "Bob", s1, Decimal("0.01"))]

    by_session = await repo.usage.usage_report(
        group_by=UsageGroupBy.SESSION, space_id="sp", start=start, end=end
    )
    assert [(g.session_id, g.totals.billed_minutes) for g in by_session.groups] == [
        (s1, 3),
        (s2, 2),
    ]
    assert by_session.groups[0].session_slug is not None

    per_user = await repo.usage.usage_report(
        group_by=UsageGroupBy.SPACE, user_id="user-a", start=start, end=end
    )
    assert [(g.space_id, g.totals.billed_minutes) for g in per_user.groups] == [
        ("other-space", 10),
        ("sp", 4),
    ]

    # the range is [start, end): a track starting exactly at `end` is excluded
    edge = await repo.usage.usage_report(
        group_by=UsageGroupBy.SPACE, start=day2, end=day2 + timedelta(seconds=1)
    )
    assert sum(g.totals.tracks for g in edge.groups) == 2
    empty = await repo.usage.usage_report(
        group_by=UsageGroupBy.DAY,
        space_id="sp",
        start=day2 + timedelta(seconds=1),
        end=datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert empty.groups == [] and empty.totals == []


async def test_usage_report_validates_arguments(repo: Store) -> None:
    with pytest.raises(ValueError, match="after"):
        await repo.usage.usage_report(group_by=UsageGroupBy.DAY, start=T0, end=T0)
    with pytest.raises(ValueError, match="aware"):
        await repo.usage.usage_report(
            group_by=UsageGroupBy.DAY, start=datetime(2026, 1, 1), end=datetime(2026, 2, 1)
        )
    with pytest.raises(ValueError, match="time zone"):
        await repo.usage.usage_report(
            group_by=UsageGroupBy.DAY, start=T0, end=T0 + timedelta(1), tz="Mars/Olympus'"
        )


async def test_currencies_are_never_mixed(repo: Store) -> None:
    sid = await _live(repo)
    await repo.usage.open_track_usage(
        session_id=sid,
        participant_identity="alice",
        track_sid="TR_eur",
        model="m",
        cost_per_minute=Decimal("0.02"),
        currency="EUR",
        now=T0,
    )
    await repo.usage.checkpoint_usage([UsageCheckpoint(sid, "TR_eur", Decimal(60))])
    await _track(repo, sid, "bob", "TR_usd", "60")
    totals = (await repo.usage.session_usage(sid)).totals
    assert [(t.currency, t.total_cost) for t in totals] == [
        ("EUR", Decimal("0.02")),
        ("USD", Decimal("0.01")),
    ]


async def test_a_checkpoint_locks_its_session_before_its_usage_rows(
    repo: Store, engine: AsyncEngine
) -> None:
    """``end_session`` locks the session row, then its usage rows; a checkpoint must take them in
    the same order, or the two deadlock and PostgreSQL aborts one (the increments or the end
    lost). Held here: with the session row locked elsewhere, a waiting checkpoint holds no
    usage row yet."""
    sid = await _live(repo)
    await _track(repo, sid, "alice", "TR_a", "0")
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    async with engine.connect() as holder:
        await holder.execute(text("SELECT id FROM sessions WHERE id = :id FOR UPDATE"), {"id": sid})
        checkpoint = asyncio.create_task(
            repo.usage.checkpoint_usage(
                [UsageCheckpoint(sid, "TR_a", Decimal(1))], now=T0 + timedelta(hours=1)
            )
        )
        while True:  # one connection per look: a transaction sees one snapshot of the stats
            async with engine.connect() as probe:
                if (await probe.execute(waiting)).scalar_one():
                    break
            assert not checkpoint.done(), "the checkpoint did not wait for the session row"
            await asyncio.sleep(0.02)
        # the checkpoint waits for the session: its usage row must still be free
        async with engine.connect() as probe:
            free = await probe.execute(
                text("SELECT id FROM track_usage WHERE session_id = :id FOR UPDATE SKIP LOCKED"),
                {"id": sid},
            )
            assert len(free.all()) == 1
            await probe.rollback()
        await holder.rollback()
    assert await checkpoint == 1
