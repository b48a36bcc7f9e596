"""Sessions and participants: create, list, join/leave upserts, end, delete, the sweeper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound, SlugTaken
from store.enums import JobStatus, ParticipantRole, SessionStatus
from store.models import Participant, Segment, TrackUsage, TranscriptionJob
from store.records import FinalSegment, SessionCursor, UsageCheckpoint, UsageGroupBy
from store.stores import Store

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


async def test_create_and_get(repo: Store) -> None:
    s = await repo.sessions.create_session(space_id="sp", created_by="u1", title="Планёрка", now=T0)
    assert s.status is SessionStatus.CREATED
    assert s.created_at == T0 and s.last_activity_at == T0
    assert s.started_at is None and s.language is None
    assert len(s.slug) == 12
    assert await repo.sessions.get_session(s.slug) == s
    assert await repo.sessions.get_session_by_id(s.id) == s
    assert await repo.sessions.get_session("missing") is None


async def test_given_slug_must_be_unique(repo: Store) -> None:
    await repo.sessions.create_session(space_id="sp", created_by="u", slug="weekly-sync")
    with pytest.raises(SlugTaken):
        await repo.sessions.create_session(space_id="sp", created_by="u", slug="weekly-sync")


async def test_list_sessions_newest_first_keyset(repo: Store) -> None:
    made = [
        await repo.sessions.create_session(
            space_id="a", created_by=f"u{i % 2}", now=T0 + timedelta(i)
        )
        for i in range(5)
    ]
    await repo.sessions.create_session(space_id="b", created_by="u0", now=T0)
    first = await repo.sessions.list_sessions(space_id="a", limit=2)
    assert [s.id for s in first] == [made[4].id, made[3].id]
    cursor = SessionCursor(first[-1].created_at, first[-1].id)
    rest = await repo.sessions.list_sessions(space_id="a", before=cursor, limit=10)
    assert [s.id for s in rest] == [made[2].id, made[1].id, made[0].id]
    mine = await repo.sessions.list_sessions(space_id="a", created_by="u0")
    assert [s.id for s in mine] == [made[4].id, made[2].id, made[0].id]
    assert await repo.sessions.list_sessions(status=SessionStatus.LIVE) == []


async def test_sessions_with_jobs(repo: Store) -> None:
    plain = await repo.sessions.create_session(space_id="a", created_by="u", now=T0)
    asked = await repo.sessions.create_session(space_id="a", created_by="u", now=T0 + timedelta(1))
    job = await repo.jobs.request_transcription(asked.id)
    gone = await repo.sessions.create_session(
        space_id="a", created_by="u", now=T0 - timedelta(days=9)
    )
    await repo.sessions.sweep_sessions(
        inactive_after=timedelta(hours=1), expire_after=timedelta(days=1), now=T0
    )
    rows = await repo.sessions.list_sessions_with_jobs(space_id="a", include_expired=False)
    assert [(s.id, j) for s, j in rows] == [(asked.id, job), (plain.id, None)]
    everything = await repo.sessions.list_sessions_with_jobs(space_id="a")
    assert [s.id for s, _ in everything] == [asked.id, plain.id, gone.id]
    assert everything[2][0].status is SessionStatus.EXPIRED
    assert [
        s.id for s in await repo.sessions.list_sessions(space_id="a", include_expired=False)
    ] == [
        asked.id,
        plain.id,
    ]
    assert await repo.sessions.get_session_with_job(asked.slug) == (asked, job)
    assert await repo.sessions.get_session_with_job(plain.slug) == (plain, None)
    assert await repo.sessions.get_session_with_job("nope") is None


async def test_update_session(repo: Store) -> None:
    s = await repo.sessions.create_session(space_id="sp", created_by="u", language="ru")
    updated = await repo.sessions.update_session(s.id, title="New")
    assert updated is not None and updated.title == "New" and updated.language == "ru"
    auto = await repo.sessions.update_session(s.id, language=None)
    assert auto is not None and auto.language is None and auto.title == "New"
    assert await repo.sessions.update_session(10**9, title="x") is None


async def test_participant_join_leave_rejoin(repo: Store) -> None:
    s = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
    p = await repo.sessions.participant_joined(
        s.id, "alice", name="Alice", role=ParticipantRole.HOST, now=T0 + timedelta(minutes=1)
    )
    assert p.joined_at == T0 + timedelta(minutes=1) and p.left_at is None
    assert p.role is ParticipantRole.HOST and p.user_id is None
    live = await repo.sessions.get_session_by_id(s.id)
    assert live is not None and live.status is SessionStatus.LIVE
    assert live.started_at == T0 + timedelta(minutes=1)

    left = await repo.sessions.participant_left(s.id, "alice", now=T0 + timedelta(minutes=5))
    assert left is not None and left.left_at == T0 + timedelta(minutes=5)

    # rejoin: same row, first join time kept, left_at cleared; None fields keep stored values
    again = await repo.sessions.participant_joined(
        s.id, "alice", user_id="user-1", now=T0 + timedelta(minutes=7)
    )
    assert again.id == p.id and again.joined_at == p.joined_at and again.left_at is None
    assert again.name == "Alice" and again.role is ParticipantRole.HOST
    assert again.user_id == "user-1"
    renamed = await repo.sessions.participant_joined(s.id, "alice", name="Alice B.")
    assert renamed.name == "Alice B." and renamed.user_id == "user-1"

    # the session's start is the first join; a second participant does not move it
    await repo.sessions.participant_joined(s.id, "bob", now=T0 + timedelta(minutes=9))
    after = await repo.sessions.get_session_by_id(s.id)
    assert after is not None and after.started_at == T0 + timedelta(minutes=1)
    assert [x.identity for x in await repo.sessions.list_participants(s.id)] == ["alice", "bob"]
    assert await repo.sessions.participant_left(s.id, "nobody") is None


async def test_join_unknown_session(repo: Store) -> None:
    with pytest.raises(NotFound):
        await repo.sessions.participant_joined(123456, "alice")


async def test_end_session_is_idempotent_and_stops_work(repo: Store) -> None:
    s = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
    await repo.sessions.participant_joined(s.id, "alice", now=T0)
    await repo.usage.open_track_usage(
        session_id=s.id,
        participant_identity="alice",
        track_sid="TR_1",
        model="base",
        cost_per_minute=Decimal("0.01"),
        now=T0,
    )
    await repo.jobs.request_transcription(s.id, now=T0)
    ended = await repo.sessions.end_session(s.id, now=T0 + timedelta(hours=1))
    assert ended is not None and ended.status is SessionStatus.ENDED
    assert ended.ended_at == T0 + timedelta(hours=1)
    job = await repo.jobs.get_job(s.id)
    assert job is not None and job.status is JobStatus.STOPPED
    assert job.stop_reason == "session_ended"
    usage = await repo.usage.session_usage(s.id)
    assert usage.rows[0].ended_at == T0 + timedelta(hours=1)
    again = await repo.sessions.end_session(s.id, now=T0 + timedelta(hours=2))
    assert again == ended
    assert await repo.sessions.end_session(10**9) is None


async def test_delete_cascades_but_keeps_billing_history(repo: Store, db: AsyncSession) -> None:
    s = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
    other = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
    for sess in (s, other):
        await repo.sessions.participant_joined(sess.id, "alice", user_id="user-1", now=T0)
        await repo.transcripts.upsert_final_segment(
            FinalSegment(sess.id, "u1", "TR_1", "hello", 0, 10, participant_identity="alice"),
            now=T0,
        )
        await repo.usage.open_track_usage(
            session_id=sess.id,
            participant_identity="alice",
            track_sid="TR_1",
            model="base",
            cost_per_minute=Decimal("0.01"),
            now=T0,
        )
        await repo.usage.checkpoint_usage([UsageCheckpoint(sess.id, "TR_1", Decimal("90"))], now=T0)
        await repo.jobs.request_transcription(sess.id, now=T0)

    assert await repo.sessions.delete_session(s.id, now=T0 + timedelta(minutes=3)) is True
    assert await repo.sessions.delete_session(s.id) is False
    assert await repo.sessions.get_session(s.slug) is None

    async def count(model: type, **where: object) -> int:
        stmt = select(func.count()).select_from(model).filter_by(**where)
        return int((await db.execute(stmt)).scalar_one())

    assert await count(Participant, session_id=s.id) == 0
    assert await count(Segment, session_id=s.id) == 0
    assert await count(TranscriptionJob, session_id=s.id) == 0
    # the other session is untouched
    assert await count(Participant, session_id=other.id) == 1
    assert await count(Segment, session_id=other.id) == 1

    # usage stays: detached, closed, still in the space's and the user's reports
    detached = (
        await db.execute(select(TrackUsage).where(TrackUsage.session_id.is_(None)))
    ).scalar_one()
    assert detached.participant_id is None and detached.space_id == "sp"
    assert detached.user_id == "user-1" and detached.billed_minutes == 2
    assert detached.ended_at == T0 + timedelta(minutes=3)
    report = await repo.usage.usage_report(
        start=T0 - timedelta(days=1),
        end=T0 + timedelta(days=1),
        group_by=UsageGroupBy.SESSION,
        space_id="sp",
    )
    assert [(g.session_id, g.totals.billed_minutes) for g in report.groups] == [
        (other.id, 2),
        (None, 2),
    ]
    assert report.totals[0].billed_minutes == 4
    assert report.totals[0].total_cost == Decimal("0.04")


async def test_sweeper_ends_inactive_and_expires_unstarted(repo: Store) -> None:
    inactive = timedelta(minutes=30)
    expire = timedelta(hours=24)
    quiet = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
    await repo.sessions.participant_joined(quiet.id, "a", now=T0)
    await repo.jobs.request_transcription(quiet.id, now=T0)
    busy = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
    await repo.sessions.participant_joined(busy.id, "a", now=T0)
    await repo.transcripts.upsert_final_segment(
        FinalSegment(busy.id, "u1", "TR", "still talking", 0, 1), now=T0 + timedelta(minutes=25)
    )
    stale = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0 - expire)
    fresh = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)

    now = T0 + timedelta(minutes=40)
    result = await repo.sessions.sweep_sessions(
        inactive_after=inactive, expire_after=expire, now=now
    )
    assert result.ended == [quiet.slug]
    assert result.expired == [stale.slug]

    states = {
        s.slug: s.status
        for s in [await repo.sessions.get_session_by_id(x.id) for x in (quiet, busy, stale, fresh)]
        if s is not None
    }
    assert states == {
        quiet.slug: SessionStatus.ENDED,
        busy.slug: SessionStatus.LIVE,
        stale.slug: SessionStatus.EXPIRED,
        fresh.slug: SessionStatus.CREATED,
    }
    job = await repo.jobs.get_job(quiet.id)
    assert job is not None and job.status is JobStatus.STOPPED and job.stop_reason == "inactive"
    again = await repo.sessions.sweep_sessions(
        inactive_after=inactive, expire_after=expire, now=now
    )
    assert again.ended == [] and again.expired == []
