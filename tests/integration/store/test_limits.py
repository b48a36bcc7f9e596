"""Concurrency limits (tracks per session, per user) and the monthly quota per space."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.errors import InvalidState, LimitExceeded, NotFound
from store.records import LimitReason, TranscriptionLimits, UsageCheckpoint
from store.stores import Store

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
PRICE = Decimal("0.01")


async def _session(repo: Store, space: str = "sp", *people: tuple[str, str | None]) -> int:
    s = await repo.sessions.create_session(space_id=space, created_by="owner", now=T0)
    for identity, user in people or (("alice", "user-a"),):
        await repo.sessions.participant_joined(s.id, identity, user_id=user, now=T0)
    return s.id


async def _open(
    repo: Store,
    sid: int,
    who: str,
    track: str,
    limits: TranscriptionLimits | None,
    *,
    now: datetime = T0,
) -> None:
    await repo.usage.open_track_usage(
        session_id=sid,
        participant_identity=who,
        track_sid=track,
        model="m",
        cost_per_minute=PRICE,
        limits=limits,
        now=now,
    )


async def test_tracks_per_session(repo: Store) -> None:
    sid = await _session(repo, "sp", ("a", None), ("b", None), ("c", None))
    limits = TranscriptionLimits(max_tracks_per_session=2)
    await _open(repo, sid, "a", "TR_a", limits)
    await _open(repo, sid, "b", "TR_b", limits)
    with pytest.raises(LimitExceeded) as err:
        await _open(repo, sid, "c", "TR_c", limits)
    check = err.value.check
    assert check.reason is LimitReason.SESSION_TRACKS and check.session_tracks == 2
    assert not check.allowed and not err.value.retryable
    # re-opening an active track is no new track
    await _open(repo, sid, "a", "TR_a", limits)
    # a closed track frees its slot
    await repo.usage.close_track_usage(sid, "TR_b", now=T0)
    await _open(repo, sid, "c", "TR_c", limits)


async def test_tracks_per_user_across_sessions(repo: Store) -> None:
    limits = TranscriptionLimits(max_tracks_per_user=2)
    s1 = await _session(repo, "sp", ("alice", "user-a"), ("guest", None))
    s2 = await _session(repo, "sp", ("alice-phone", "user-a"), ("guest", None))
    await _open(repo, s1, "alice", "TR_1", limits)
    await _open(repo, s2, "alice-phone", "TR_2", limits)
    with pytest.raises(LimitExceeded) as err:
        await _open(repo, s1, "alice", "TR_3", limits)
    assert err.value.check.reason is LimitReason.USER_TRACKS
    assert err.value.check.user_tracks == 2
    await _open(repo, s1, "guest", "TR_4", limits)  # anonymous: no per-user limit


async def test_stale_tracks_do_not_count(repo: Store) -> None:
    """A worker that died without closing its tracks must not block new ones for ever."""
    sid = await _session(repo, "sp", ("a", None), ("b", None))
    limits = TranscriptionLimits(max_tracks_per_session=1, stale_after=timedelta(minutes=2))
    await _open(repo, sid, "a", "TR_a", limits)
    with pytest.raises(LimitExceeded):
        await _open(repo, sid, "b", "TR_b", limits, now=T0 + timedelta(minutes=1))
    await _open(repo, sid, "b", "TR_b", limits, now=T0 + timedelta(minutes=3))


async def test_monthly_quota_default_and_override(repo: Store) -> None:
    sid = await _session(repo, "sp", ("a", None), ("b", None), ("c", None))
    await _open(repo, sid, "a", "TR_a", None)
    await repo.usage.checkpoint_usage(
        [UsageCheckpoint(sid, "TR_a", Decimal(600), ended=True)], now=T0
    )
    # last month's usage does not count
    old = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)
    past = await repo.sessions.create_session(space_id="sp", created_by="owner", now=old)
    await repo.sessions.participant_joined(past.id, "a", now=old)
    await _open(repo, past.id, "a", "TR_old", None, now=old)
    await repo.usage.checkpoint_usage([UsageCheckpoint(past.id, "TR_old", Decimal(6000))], now=old)

    assert await repo.usage.monthly_minutes_used("sp", now=T0) == 10
    assert await repo.usage.monthly_minutes_used("sp", now=old) == 100
    limits = TranscriptionLimits(monthly_minutes_quota=10)
    with pytest.raises(LimitExceeded) as err:
        await _open(repo, sid, "b", "TR_b", limits)
    assert err.value.check.reason is LimitReason.MONTHLY_QUOTA
    assert (err.value.check.used_minutes, err.value.check.quota_minutes) == (10, 10)

    await repo.usage.set_space_quota("sp", 11)
    assert await repo.usage.effective_quota("sp", default=10) == 11
    await _open(repo, sid, "b", "TR_b", limits)
    await repo.usage.set_space_quota("sp", None)  # unlimited for this space
    assert await repo.usage.effective_quota("sp", default=10) is None
    check = await repo.usage.check_transcription_allowed(session_id=sid, limits=limits, now=T0)
    assert check.allowed and check.quota_minutes is None and check.used_minutes == 10
    await repo.usage.clear_space_quota("sp")
    assert await repo.usage.effective_quota("sp", default=10) == 10
    assert await repo.usage.effective_quota("elsewhere", default=None) is None
    check = await repo.usage.check_transcription_allowed(session_id=sid, limits=limits, now=T0)
    assert check.reason is LimitReason.MONTHLY_QUOTA


async def test_concurrent_opens_respect_the_limit(repo: Store) -> None:
    """Ten tracks start at once against a limit of three: exactly three get through."""
    people = tuple((f"p{i}", None) for i in range(10))
    sid = await _session(repo, "sp", *people)
    limits = TranscriptionLimits(max_tracks_per_session=3)

    async def attempt(i: int) -> bool:
        try:
            await _open(repo, sid, f"p{i}", f"TR_{i}", limits)
        except LimitExceeded:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(10)))
    assert sum(results) == 3
    assert len((await repo.usage.session_usage(sid)).rows) == 3


async def test_open_requires_active_session_and_known_participant(repo: Store) -> None:
    sid = await _session(repo)
    with pytest.raises(NotFound):
        await _open(repo, sid, "stranger", "TR_x", None)
    with pytest.raises(NotFound):
        await _open(repo, 10**9, "alice", "TR_x", None)
    await repo.sessions.end_session(sid)
    with pytest.raises(InvalidState):
        await _open(repo, sid, "alice", "TR_x", None)
    with pytest.raises(NotFound):
        await repo.usage.check_transcription_allowed(session_id=10**9, limits=TranscriptionLimits())
